from ossctl.cli.app import main

raise SystemExit(main())
