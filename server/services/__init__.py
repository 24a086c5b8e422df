"""Business services: each takes the node, the acting principal and plain values.

Controllers validate and call exactly one service function; services do the work
through `node.db.read()` and the unit of work `node.db.write()`.
"""
