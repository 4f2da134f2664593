#!/usr/bin/env python3
"""Stands in for powershell.exe in LocalTransport tests: same command line, same result file.

What it does is chosen by a ``# FAKE: <action>`` line in the script it is asked to run.
"""

import json
import os
import subprocess
import sys
import time

args = sys.argv[1:]
opts = {args[i]: args[i + 1] for i in range(len(args) - 1) if args[i].startswith("-") and args[i] != "-File"}
with open(opts["-ScriptPath"], "rb") as f:
    raw = f.read()
assert raw.startswith(b"\xef\xbb\xbf"), "scripts must be written with a UTF-8 BOM for Windows PowerShell 5.1"
script = raw.decode("utf-8-sig")
with open(opts["-ParameterPath"], encoding="utf-8") as f:
    params = json.load(f)
action = next((line.split(":", 1)[1].strip() for line in script.splitlines() if line.startswith("# FAKE:")), "ok")
doc = {"output": [], "errors": [], "warnings": [], "verbose": [], "information": [], "failed": False}
if action == "ok":
    doc["output"] = [json.dumps(params), {"n": 1}]
    doc["warnings"] = ["careful"]
elif action == "fail":
    doc["failed"] = True
    doc["errors"] = [
        {
            "message": "Access is denied",
            "category": "PermissionDenied",
            "fully_qualified_error_id": "UnauthorizedAccess",
            "target": "C:\\x",
            "script_stack_trace": "at <ScriptBlock>, line 3",
        }
    ]
elif action == "sleep-tree":
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(params["PidFile"], "w") as f:
        f.write(str(child.pid))
    time.sleep(60)
elif action == "exit3":
    sys.stderr.write("boom\n")
    sys.exit(3)
elif action == "no-result":
    sys.exit(0)
elif action == "garbage":
    with open(opts["-ResultPath"], "w") as f:
        f.write("{not json")
    sys.exit(0)
with open(opts["-ResultPath"], "w", encoding="utf-8") as f:
    json.dump(doc, f)
os._exit(0)
