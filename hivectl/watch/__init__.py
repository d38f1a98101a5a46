"""`hivectl watch realm`: live presence events of one realm.

`state` holds what the watcher knows (pure), `render` turns it into a Rich view or lines
(pure), `driver` feeds it from a `hivectl.client` connection.
"""
