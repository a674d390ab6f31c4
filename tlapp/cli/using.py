"""Using and moving a trained run: predict, export, push, compare, and the page (app)."""

from __future__ import annotations

import os
import sys

from .args import json_arg, positive, print_json


def add_predict(command) -> None:
    predict = command("predict", help="classify images with a trained run")
    predict.add_argument("run_dir")
    predict.add_argument("images", nargs="+", help="image files or folders")
    predict.add_argument("--csv", default="", help="write one row per image to this CSV file")
    predict.add_argument(
        "--onnx", action="store_true", help="classify with ONNX Runtime (the run's model.onnx)"
    )
    predict.add_argument(
        "--device",
        default="auto",
        choices=["auto", "cpu", "cuda", "mps"],
        help="where to classify; auto: a CUDA GPU, else Apple's MPS, else the CPU",
    )
    predict.add_argument(
        "--top-k", type=positive, default=1, metavar="K", help="the K most likely classes"
    )
    json_arg(predict)
    predict.set_defaults(func=cmd_predict)


def add_app(command) -> None:
    app = command("app", help="serve the page in a browser (the same as `python app.py`)")
    app.add_argument(
        "--host",
        help="the address to serve on, 0.0.0.0 for every interface "
        "(default: $GRADIO_SERVER_NAME, else 127.0.0.1)",
    )
    app.add_argument("--port", type=int, help="the port (default: $GRADIO_SERVER_PORT, else 7860)")
    app.add_argument("--share", action="store_true", help="also make a public gradio.live link")
    app.set_defaults(func=cmd_app)


def add_export(command) -> None:
    export = command("export", help="write the model as ONNX, checked against PyTorch")
    export.add_argument("run_dir")
    export.add_argument("--format", default="onnx", choices=["onnx"], help="the file format")
    export.add_argument(
        "--int8", action="store_true", help="also write model.int8.onnx (dynamic quantization)"
    )
    export.add_argument(
        "--check-images",
        nargs="+",
        default=None,
        metavar="IMAGE",
        help="image files or folders to check with when the run's validation images are gone",
    )
    export.set_defaults(func=cmd_export)


def add_push(command) -> None:
    push = command("push", help="publish the run to the Hugging Face Hub, with a model card")
    push.add_argument("run_dir")
    push.add_argument("repo_id", help="the model repository: name or user/name")
    push.add_argument("--public", action="store_true", help="make a new repository public")
    push.add_argument(
        "--token-env",
        default="",
        metavar="NAME",
        help="read the token from this environment variable (default: HF_TOKEN, else the "
        "login stored by `hf auth login`)",
    )
    push.set_defaults(func=cmd_push)


def add_compare(command) -> None:
    compare = command("compare", help="compare run folders: method, accuracy, time, size")
    compare.add_argument("runs", nargs="+", help="run folders, or folders of run folders")
    compare.add_argument("--json", action="store_true", help="one JSON record on stdout")
    compare.set_defaults(func=cmd_compare)


def cmd_predict(args) -> int:
    import numpy as np

    from ..data import image_files

    if args.onnx:
        from ..export import OnnxPredictor

        if args.device not in ("auto", "cpu"):
            raise ValueError("ONNX Runtime classifies on the CPU here: leave out --device.")
        predictor, device = OnnxPredictor(args.run_dir), "cpu"
    else:
        from ..predict import Predictor

        device = inference_device(args.device)
        predictor = Predictor(args.run_dir, device)
    table = predictor.table(image_files(args.images))
    if args.csv:
        table.to_csv(args.csv, index=False)
    classes = predictor.classes
    probs = table[[f"p({c})" for c in classes]].to_numpy(dtype=float)
    k = min(args.top_k, len(classes))
    top = [
        [] if error else [(classes[i], float(p[i])) for i in np.argsort(-p)[:k]]
        for p, error in zip(probs, table["error"])
    ]
    shown = table[["path", "prediction", "confidence", "error"]]
    if k > 1:
        shown.insert(3, f"top {k}", [", ".join(f"{c} {p:.3f}" for c, p in t) for t in top])
    print(shown.to_string(index=False), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        rows = table[["path", "prediction", "confidence", "error"]].to_dict("records")
        print_json(
            {
                "run_dir": str(args.run_dir),
                "device": device,
                "predictions": [
                    {**row, "top_k": [{"class": c, "probability": p} for c, p in t]}
                    for row, t in zip(rows, top)
                ],
            }
        )
    return 0 if len(table) and (table["error"] == "").all() else 1


def inference_device(choice: str) -> str:
    """auto: a CUDA GPU, else Apple's MPS, else the CPU; a device asked for must be there."""
    import torch

    there = {"cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if choice == "auto":
        return next((name for name, ok in there.items() if ok), "cpu")
    if choice != "cpu" and not there[choice]:
        raise ValueError(f"There is no {choice.upper()} device here: use --device cpu or auto.")
    return choice


def cmd_app(args) -> int:
    """Serve the page until Ctrl-C; the options are passed on as Gradio's own variables."""
    for name, value in (
        ("GRADIO_SERVER_NAME", args.host),
        ("GRADIO_SERVER_PORT", args.port),
        ("GRADIO_SHARE", "1" if args.share else None),
    ):
        if value is not None:
            os.environ[name] = str(value)
    from ..web import serve

    serve()
    return 0


def cmd_export(args) -> int:
    from ..export import export_onnx

    report = export_onnx(args.run_dir, check_images=args.check_images, quantize=args.int8)
    for written in filter(None, (report, report.int8)):
        print(written.describe())
        print(written.path)
    return 0


def cmd_push(args) -> int:
    from os import environ

    from ..export import push_to_hub

    token = None
    if args.token_env:
        token = environ.get(args.token_env, "").strip()
        if not token:
            raise ValueError(f"The environment variable {args.token_env} holds no token.")
    url = push_to_hub(args.run_dir, args.repo_id, token=token, private=not args.public)
    print(url)
    return 0


def cmd_compare(args) -> int:
    from pathlib import Path

    from .. import runs

    folders = []
    for given in map(Path, args.runs):
        if not given.is_dir():
            raise ValueError(f"'{given}' is not a folder.")
        nested = sorted(p for p in given.iterdir() if p.is_dir() and runs.run_record(p))
        folders += [given] if runs.run_record(given) else nested
    table = runs.compare(folders)
    if table.empty:
        raise ValueError("No run folder with a saved model was found there.")
    shown = table.assign(
        test_accuracy=[
            accuracy_with_interval(*row)
            for row in table[["test_accuracy", "test_low", "test_high"]].itertuples(index=False)
        ],
        val_accuracy=table["val_accuracy"].map(lambda v: "" if _missing(v) else f"{v:.1%}"),
        val_macro_f1=table["val_macro_f1"].map(lambda v: "" if _missing(v) else f"{v:.3f}"),
    ).drop(columns=["test_low", "test_high"])
    print(shown.to_string(index=False), file=sys.stderr if args.json else sys.stdout)
    if args.json:
        print_json({"runs": table.to_dict("records")})
    return 0


def _missing(value) -> bool:
    return value is None or value != value  # None, or NaN in a pandas column


def accuracy_with_interval(accuracy, low, high) -> str:
    """'93.1% (88-96%)': an accuracy and its 95% interval, or '' when there is none."""
    if _missing(accuracy):
        return ""
    interval = "" if _missing(low) or _missing(high) else f" ({low:.0%}-{high:.0%})"
    return f"{accuracy:.1%}{interval}"
