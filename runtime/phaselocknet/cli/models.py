"""``phaselocknet list``: the published models, and which are in the model store."""

from __future__ import annotations

import json


def add_parsers(sub) -> None:
    parser = sub.add_parser(
        "list", help="list the published models (ids), installed or not",
        description="List the 260 published model ids matching PATTERN (a glob over ids such as "
                    "'sound_localization/*' or '*/simplified_IHC3000/*'), with their task, front end and whether "
                    "the bundle is in the model store ($PHASELOCKNET_HOME, default the user cache folder).",
    )
    parser.add_argument("pattern", nargs="*", default=["*"], metavar="PATTERN")
    parser.add_argument("--installed", action="store_true", help="only models whose bundle is in the store")
    parser.add_argument("--verify", action="store_true",
                        help="hash installed bundles (about 1 s per localization model) to fill the verified column; "
                             "results are remembered until a file changes")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=cmd_list)


def cmd_list(args) -> int:
    from ..store import front_end_name, list_models, model_status, published_models, store_home

    ids = list_models(args.pattern, installed=True if args.installed else None)
    status = model_status(ids, check=args.verify)
    rows = [{"id": i, "task": published_models()[i]["task"], "front_end": front_end_name(published_models()[i]),
             **status[i]} for i in ids]
    if args.json:
        print(json.dumps({"store": str(store_home()), "models": rows}, indent=2))
        return 0
    width = max([len("id")] + [len(r["id"]) for r in rows])
    fw = max([len("front end")] + [len(r["front_end"]) for r in rows])
    print(f"{'id':<{width}}  {'task':<21}  {'front end':<{fw}}  installed  verified")
    for r in rows:
        print(f"{r['id']:<{width}}  {r['task']:<21}  {r['front_end']:<{fw}}  {'yes' if r['installed'] else 'no':<9}  "
              f"{r['verified']}")
    installed = sum(r["installed"] for r in rows)
    print(f"{len(rows)} models, {installed} installed in {store_home()}")
    return 0
