"""Offline stand-in for the get-pip.py script that ansible-test downloads to bootstrap pip.

ansible-test creates each sanity test's virtual environment without pip, then runs
``get-pip.py pip==VERSION --no-setuptools --no-wheel`` in it, a script it downloads from a
host these machines cannot reach. run.sh saves this file where ansible-test caches that
script (``~/.ansible/test/cache/get_pip_VERSION.py``), so nothing is downloaded but packages
from the configured pip index.

It does what get-pip.py does, with the pip wheel that ships with Python (ensurepip's) in place
of the copy of pip embedded in get-pip.py: that pip, imported from its wheel, installs the
requested pip (and whatever else is asked for) from the pip index.
"""

import glob
import os
import sys


# Debian's Python keeps ensurepip's wheels here (python3-pip-whl), not in ``_bundled``.
DEBIAN_WHEELS = "/usr/share/python-wheels"


def bundled_pip_wheel():
    """Return the path of the pip wheel that ensurepip ships, or exit when there is none."""
    try:
        import ensurepip  # pylint: disable=import-outside-toplevel
    except ImportError:
        sys.exit("get_pip.py: this Python has no ensurepip module to bootstrap pip from")

    dirs = [os.path.join(os.path.dirname(ensurepip.__file__), "_bundled"), DEBIAN_WHEELS]
    wheels = sorted(path for d in dirs for path in glob.glob(os.path.join(d, "pip-*.whl")))

    if not wheels:
        sys.exit("get_pip.py: no pip wheel in %s" % ", ".join(dirs))

    return wheels[-1]


def install_arguments(argv):
    """Return pip's arguments for get-pip.py's command line (get-pip's own flags taken off)."""
    args = [arg for arg in argv if arg not in ("--no-setuptools", "--no-wheel")]

    return ["install", "--upgrade", "--force-reinstall"] + args


def main():
    """Install the requested packages with the bundled pip, as get-pip.py does."""
    sys.path.insert(0, bundled_pip_wheel())

    # pylint: disable-next=import-outside-toplevel,import-error
    from pip._internal.cli.main import main as pip_main

    sys.exit(pip_main(install_arguments(sys.argv[1:])))


if __name__ == "__main__":
    main()
