"""Start the tlapp page: `python app.py` serves it on http://127.0.0.1:7860.

Also the Hugging Face Spaces entry point. Environment: TLAPP_HOST (default 127.0.0.1;
0.0.0.0 on Spaces), TLAPP_PORT (7860), TLAPP_HOME (where sessions and runs are kept),
TLAPP_LOCAL_FOLDERS=1/0 (allow reading folders on this computer; on by default only when private).
"""

import os

from tlapp.web import AppSettings, build_ui, launch_kwargs

if __name__ == "__main__":
    on_spaces = bool(os.environ.get("SPACE_ID"))
    host = os.environ.get("TLAPP_HOST", "0.0.0.0" if on_spaces else "127.0.0.1")
    settings = AppSettings.from_env(server_name=host)
    build_ui(settings).queue(default_concurrency_limit=4).launch(
        server_name=host,
        server_port=int(os.environ.get("TLAPP_PORT", "7860")),
        **launch_kwargs(settings),
    )
