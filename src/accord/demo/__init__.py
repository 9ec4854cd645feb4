"""The embedded demo job (``accord demo``)."""
