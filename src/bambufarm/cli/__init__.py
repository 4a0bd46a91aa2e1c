"""The `bambufarm` command line."""
