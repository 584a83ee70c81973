"""One preprocessing function per modality, shared by the gateway and by training. Bad input raises a kind from
``gateway.errors``."""
