"""Validates an ASiC-E container with libdigidocpp (pydigidoc 0.0.4), offline.

Usage: python digidoc_validate.py CONTAINER WORKDIR

The bundled digidocpp.conf is copied to WORKDIR with tsl.autoupdate=false (no TSL download);
the schema files come along. Prints one JSON object: the data files, and per signature its
profile, signing time, time-stamp time and validate()'s error text (null when it passed).
"""

import json
import os
import shutil
import sys

import pydigidoc

container_path, work = sys.argv[1], sys.argv[2]
schema = os.path.join(work, "digidoc-schema")
shutil.copytree(pydigidoc._SCHEMA_DIR, schema, dirs_exist_ok=True)
conf = os.path.join(schema, "digidocpp.conf")
text = open(conf, encoding="utf-8").read()
autoupdate = '<param name="tsl.autoupdate" lock="false">false</param>'
if autoupdate not in text:
    text = text.replace("</configuration>", "    " + autoupdate + "\n</configuration>")
    open(conf, "w", encoding="utf-8").write(text)
pydigidoc.initialize_lib("esig-tests", schema)

out = {"files": [], "signatures": []}
try:
    c = pydigidoc.Container.open(container_path)
except Exception as e:  # noqa: BLE001 - report every failure
    out["open_error"] = str(e)
    print(json.dumps(out))
    sys.exit(0)
for f in c.data_files():
    out["files"].append({"name": f.file_name(), "media_type": f.media_type()})
for s in c.signatures():
    entry = {"id": s.id(), "profile": s.profile(), "claimed": s.claimed_signing_time(),
             "tst_time": s.time_stamp_time(), "error": None}
    try:
        s.validate()
    except Exception as e:  # noqa: BLE001
        entry["error"] = str(e)
    out["signatures"].append(entry)
print(json.dumps(out))
