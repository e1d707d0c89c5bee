"""The feature laboratory behind the workbench's Features view: SAEs attached to a served model (with their
feature stores and the user's labels), live edits chosen per request, contrast, and export to bundles.
Plain library code: the server's routes are thin wrappers over it."""
