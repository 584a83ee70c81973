"""The service layer: one object per concern, built once in the lifespan; routes and the CLI call these."""
