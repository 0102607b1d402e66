"""The operator console: static HTML, CSS and JavaScript served at ``/ui`` (``REID_UI=false`` turns it off).

The console calls only the public API, from the browser, with the API key the operator types (kept in the
tab's ``sessionStorage``); the files themselves hold nothing secret and are served without a key.
"""
