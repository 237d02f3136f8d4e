"""The embedded `local` environment: the stack's template served on 127.0.0.1 with moto + real handlers."""
