"""Stand-ins for outside services (Spotify) that the tests start locally."""
