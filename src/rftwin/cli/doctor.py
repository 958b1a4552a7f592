"""``rftwin doctor``: what rftwin found on this machine."""
from __future__ import annotations

import json
import os
import platform

import typer


def doctor_report() -> dict:
    from rftwin.runtime import ensure_llvm, find_libllvm, sionna_rt  # noqa: PLC0415

    rep: dict = {"python": platform.python_version(), "llvm_found": find_libllvm(), "DRJIT_LIBLLVM_PATH": ensure_llvm()}
    try:
        rt = sionna_rt()
        import drjit as dr  # noqa: PLC0415
        import mitsuba as mi  # noqa: PLC0415

        rep.update(sionna_rt=getattr(rt, "__version__", "?"), mitsuba=mi.__version__, drjit=dr.__version__,
                   variant=mi.variant(), sionna_ok=True)
    except Exception as exc:  # noqa: BLE001 - the report must say what failed
        rep.update(sionna_ok=False, sionna_error=str(exc))
    import torch  # noqa: PLC0415

    rep.update(torch=torch.__version__, cuda_available=torch.cuda.is_available(),
               cuda_device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
               torch_threads=torch.get_num_threads(), cpu_count=os.cpu_count())
    return rep


def register(app: typer.Typer) -> None:
    @app.command()
    def doctor(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
        """Report the Sionna/Mitsuba variant, the LLVM library, torch and CUDA."""
        rep = doctor_report()
        if as_json:
            print(json.dumps(rep, indent=2))
        else:
            from rich.console import Console  # noqa: PLC0415
            from rich.table import Table  # noqa: PLC0415

            t = Table(title="rftwin doctor")
            t.add_column("item")
            t.add_column("value")
            for k, v in rep.items():
                t.add_row(k, str(v))
            Console().print(t)
        if not rep.get("sionna_ok"):
            raise typer.Exit(1)
