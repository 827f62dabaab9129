"""The monitor page (design.md §3 ``GET /``): static files served by the node itself.

``static/`` holds the page (index.html, app.css, plain ES modules under js/) and the vendored
libraries under vendor/ (versions and licences in static/VENDORED.md). Nothing is fetched from
elsewhere at run time and nothing is built: the files are served as they are.
"""
