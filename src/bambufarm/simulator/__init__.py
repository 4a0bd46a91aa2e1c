"""Simulated Bambu printers on the printer side of the real LAN protocol.

Imports only bambufarm.protocol.
"""
