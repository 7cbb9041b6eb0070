"""Faust agents, one module per stage: frames -> detect -> track -> ...

Found by the app's autodiscovery; every worker runs all of them.
"""
