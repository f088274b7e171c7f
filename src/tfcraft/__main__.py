"""`python -m tfcraft`: the same as the `tfcraft` command."""

from tfcraft.cli import main

if __name__ == "__main__":
    main()
