"""``python -m rollwise.cli``: run the command line."""

from rollwise.cli import main

if __name__ == "__main__":
    main()
