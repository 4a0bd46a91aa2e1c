"""The fleet: one supervised session per printer, live state, commands, files, discovery, camera.

Imports bambufarm.protocol only (storage joins later); publishes typed events.
"""
