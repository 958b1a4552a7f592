"""``rftwin bench priors``: the seed-004 study (initialisation x placement x receivers) on its room."""
from __future__ import annotations

from pathlib import Path

import typer

DEFAULT_OUT = Path("benchmarks/results/priors.json")
OPTIMIZERS = ("adam", "lm")  # the study's, checked before it loads torch (tests/cli/test_cli_fast.py keeps them equal)


def register_bench(bench_app: typer.Typer) -> None:
    @bench_app.command("priors")
    def priors(quick: bool = typer.Option(False, "--quick", help="Reduced study (N in {3, 8}, shorter runs)."),
               out: Path = typer.Option(DEFAULT_OUT, "--out", help="Result JSON; PNGs go to a folder beside it."),
               optimizer: list[str] = typer.Option(None, "--optimizer", help="adam and/or lm (default both)."),
               receivers: list[int] = typer.Option(None, "--receivers", help="N values (default 2 3 4 8)."),
               reps: int = typer.Option(None, "--reps", help="Repetitions of the random draws."),
               noise_db: float = typer.Option(0.0, "--noise-db", help="Noise std (dB) added to the simulated RSS."),
               fit: list[str] = typer.Option(None, "--fit",
                                             help="Fitted quantities, repeatable: 'sigma' (the seed's problem, eps_r "
                                                  "known) and/or 'eps_r,sigma' (default both)."),
               resume: bool = typer.Option(True, "--resume/--no-resume",
                                           help="Reuse finished rows of an interrupted run (same settings)."),
               as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON.")) -> None:
        """Iterations, time and final MRE per initialisation / placement / N (seed 004, Figs. 3-6)."""
        import json  # noqa: PLC0415
        from dataclasses import replace  # noqa: PLC0415

        from rftwin.cli.common import check_at_least, fail  # noqa: PLC0415
        from rftwin.cli.outputs import check_output_file  # noqa: PLC0415

        check_output_file(out, "--out", (".json",))
        fits = []
        for f in fit or ():
            fitted = tuple(x.strip() for x in f.split(",") if x.strip())
            if not fitted or set(fitted) - {"eps_r", "sigma"}:
                fail(f"--fit {f}: expected 'sigma', 'eps_r' or 'eps_r,sigma'")
            fits.append(fitted)
        bad = set(optimizer or ()) - set(OPTIMIZERS)
        if bad:
            fail(f"--optimizer {sorted(bad)}: expected adam or lm")
        if receivers and min(receivers) < 1:
            fail("--receivers: values must be >= 1")
        check_at_least(reps, 1, "--reps")
        check_at_least(noise_db, 0, "--noise-db")
        from rftwin.io import write_json  # noqa: PLC0415
        from rftwin.studies.placement import StudyConfig, format_summary, plot_study, quick_config, run_study

        cfg = quick_config() if quick else StudyConfig()
        cfg = replace(cfg, noise_db=noise_db, fits=tuple(fits) if fits else cfg.fits,
                      optimizers=tuple(optimizer) if optimizer else cfg.optimizers,
                      n_receivers=tuple(sorted(set(receivers))) if receivers else cfg.n_receivers,
                      reps=reps if reps is not None else cfg.reps)
        partial = out.with_suffix(".partial.jsonl")
        if not resume and partial.exists():
            partial.unlink()
        doc = run_study(cfg, partial=partial, progress=not as_json)
        doc["quick"] = quick
        doc["command"] = "rftwin bench priors" + (" --quick" if quick else "")
        doc["plots"] = [str(p.relative_to(out.parent)) for p in plot_study(doc, out.parent / out.stem)]
        write_json(out, doc)
        partial.unlink(missing_ok=True)
        if as_json:
            print(json.dumps(doc["summary"], indent=2))
        else:
            print("\n".join(format_summary(doc)))
            print(f"wrote {out} and {len(doc['plots'])} plots under {out.parent / out.stem}")
