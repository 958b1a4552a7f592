"""``rftwin bench validate``: closed forms and other simulators' outputs vs rftwin (docs/validation.md)."""
from __future__ import annotations

from pathlib import Path

import typer

DEFAULT_JSON = Path("benchmarks/results/validation.json")
DEFAULT_DOC = Path("docs/validation.md")


def register_bench(bench_app: typer.Typer) -> None:
    @bench_app.command("validate")
    def validate(as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
                 out: Path = typer.Option(DEFAULT_JSON, "--out", help="Result JSON."),
                 doc: Path = typer.Option(DEFAULT_DOC, "--doc", help="Markdown page with the tables."),
                 part: list[str] = typer.Option(None, "--part",
                                                help="Parts to run, repeatable: friis, slab, two_ray, knife_edge, "
                                                     "qd, newrf (default all)."),
                 samples: int = typer.Option(100_000, "--samples-per-src", help="Rays shot per transmitter."),
                 seed: int = typer.Option(42, "--seed", help="Seed of the path solver."),
                 newrf_links: int = typer.Option(30, "--newrf-links", help="Links per NeWRF room (1-60).")) -> None:
        """Friis, ITU-R P.2040 slab, two-ray ground, ITU-R P.526 knife edge, NIST Q-D and NeWRF vs rftwin."""
        import json  # noqa: PLC0415
        import os  # noqa: PLC0415

        from rftwin.cli.common import fail  # noqa: PLC0415
        from rftwin.cli.outputs import check_output_file  # noqa: PLC0415
        from rftwin.io import write_json, write_text  # noqa: PLC0415
        from rftwin.validate.report import (  # noqa: PLC0415
            PARTS,
            format_summary,
            json_safe,
            render_markdown,
            run_validation,
        )

        check_output_file(out, "--out", (".json",))
        check_output_file(doc, "--doc", (".md",))
        parts = list(part) if part else list(PARTS)
        bad = sorted(set(parts) - set(PARTS))
        if bad:
            fail(f"--part {', '.join(bad)}: expected one of {', '.join(PARTS)}")
        if samples < 1000:
            fail(f"--samples-per-src must be >= 1000, got {samples}")
        if not 1 <= newrf_links <= 60:
            fail(f"--newrf-links must lie in 1..60 (links in benchmarks/data/newrf), got {newrf_links}")
        try:
            result = run_validation(parts, samples_per_src=samples, seed=seed, progress=not as_json,
                                    newrf_links=newrf_links)
        except (FileNotFoundError, ValueError, RuntimeError) as exc:  # missing reference files, bad data
            fail(str(exc))
        from rftwin.validate.plots import validation_png  # noqa: PLC0415

        png = validation_png(result, out.with_suffix(".png"))
        # the page names the figure relative to itself
        result["plot"] = Path(os.path.relpath(png, doc.resolve().parent)).as_posix() if png is not None else None
        write_text(doc, render_markdown(result))
        write_json(out, json_safe(result))
        if as_json:
            print(json.dumps({p: result[p].get("summary", {}) for p in parts}, indent=2))
        else:
            print("\n".join(format_summary(result)))
            print(f"wrote {out}, {doc}" + (f" and {png}" if png is not None else ""))
