"""A warm model process: one long-lived worker that has loaded the bundle, and the client that drives it.

``protocol`` (the lines both sides write), ``client`` (start, talk to, cancel and stop the worker;
standard library only, so the 3D Slicer module can use it before any dependency is installed),
``server`` (the worker's loop: cases in, results out, models loaded and warmed once),
``module_inputs`` (the arrays the Slicer module hands over) and ``lean_imports`` (start a serving
process without the training-only packages MONAI would import).
"""
