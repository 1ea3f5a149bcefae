"""`python -m minigen.presets list` and `python -m minigen.presets manifest NAME`."""

import argparse
import json
import sys

from . import preset_names, state_dict_table


def main(argv=None) -> int:
    """Run the command in `argv` (default: the command line); 0 on success, 2 for an unknown preset."""
    parser = argparse.ArgumentParser(prog="python -m minigen.presets", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the preset names, one a line")
    manifest = commands.add_parser("manifest", help="print a preset's state dict (keys, shapes, dtypes) as JSON")
    manifest.add_argument("name")
    args = parser.parse_args(argv)
    if args.command == "list":
        print("\n".join(preset_names()))
        return 0
    try:
        table = state_dict_table(args.name)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    json.dump({"tensors": table}, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
