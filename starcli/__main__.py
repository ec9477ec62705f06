"""``python -m starcli``: the same command line as the ``starcli`` script."""

from starcli.cli import main

if __name__ == "__main__":
    main()
