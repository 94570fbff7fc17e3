"""Start IM's REST service with a config file of our own.

Run by the IM venv's interpreter (never the project's): ``python im_launcher.py /path/im.cfg``.
IM only reads its config from fixed places and copies values at import time, so the options are
applied to ``IM.config.Config`` before ``IM.im_service`` is imported.
"""

import configparser
import sys


def main() -> None:
    parser = configparser.ConfigParser()
    if not parser.read(sys.argv[1]):
        sys.exit(f"cannot read IM config file {sys.argv[1]}")

    import IM.config

    IM.config.parse_options(parser, "im", IM.config.Config)
    sys.argv = ["im_service"]
    import IM.im_service

    IM.im_service.main()


if __name__ == "__main__":
    main()
