"""The web console: a realm's live map and presence, served at ``/console``.

The page is static files shipped in this package plus Leaflet from the ``xstatic-leaflet``
package (never a CDN, so it works on an air-gapped network); it talks to the server over
the ordinary WebSocket protocol with a token the user gives it, like any other client.
`routes` decides every answer; `HivekitServer.process_request` only sends it.
"""
