from gptcourse.cli import main

raise SystemExit(main())
