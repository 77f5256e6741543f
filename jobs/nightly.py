"""`python -m jobs.nightly ...` is the same as the `segment` command."""

from jobs.cli import main

if __name__ == "__main__":
    main()
