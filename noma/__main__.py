"""`python -m noma` is the `noma` command."""

from noma.cli import main

raise SystemExit(main())
