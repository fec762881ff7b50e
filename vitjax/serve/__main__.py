"""`python -m vitjax.serve --model DIR`: see vitjax.serve.cli."""
import sys

from vitjax.serve.cli import main

sys.exit(main())
