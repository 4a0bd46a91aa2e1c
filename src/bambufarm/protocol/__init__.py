"""The Bambu Lab LAN protocol as a library: pure codecs plus thin async adapters.

This package imports nothing else from bambufarm; it could be published alone.
"""
