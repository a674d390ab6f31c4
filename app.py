"""Start the tlapp page: `python app.py` (or `tlapp app`) serves it on http://127.0.0.1:7860.

Also the Hugging Face Spaces entry point. Environment: Gradio's GRADIO_SERVER_NAME (default
127.0.0.1; 0.0.0.0 on Spaces), GRADIO_SERVER_PORT (7860), GRADIO_ROOT_PATH and GRADIO_SHARE;
TLAPP_HOME (where sessions and runs are kept), TLAPP_LOCAL_FOLDERS=1/0 (allow reading folders
on this computer; on by default only when private, never on a public page). The README lists
the rest.
"""

from tlapp.web import serve

if __name__ == "__main__":
    serve()  # the same as `tlapp app`
