"""A stand-in for PythonSlicer (a CTKAppLauncher): it starts Python as its child with the same standard
input and output (Qt's ForwardedChannels and ForwardedInputChannel) and exits with the child's code.
Killing this process alone leaves the child running, as killing the real launcher does."""

import subprocess
import sys

if __name__ == "__main__":
    sys.exit(subprocess.call([sys.executable, *sys.argv[1:]]))
