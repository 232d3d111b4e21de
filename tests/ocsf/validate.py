#!/usr/bin/env python3
"""Checks the golden snapshots (tests/it/snapshots/it__normalize_golden__*.snap, the
inventory's it__inventory_golden__*_ocsf.snap and verify-user's it__verify_user__*.snap) and, with
`--events FILE...`, files of OCSF events, one JSON object a line (`examples/ocsf_drain.rs`
renders a whole simulator dataset so), so that record shapes the goldens lack are checked too.

Before anything else the walk must reject a known violation (an `auth_factors[].device.port`,
which OCSF 1.7.0 `device` does not define); a walk that accepts it fails the run.

OCSF: every event validates with the official OCSF 1.7.0 models of pydantic-ocsf (built from
the schema export the package ships), and a walk over the event rejects any attribute the
class or object does not define (outside `unmapped`), checks enum ids against the schema's
enums, `type_uid == class_uid*100 + activity_id`, `category_uid` and `metadata.version`.

CEF: every line parses with the independent `cefp` parser; every custom string has its label;
special characters (| = \\ newlines, unicode) round-trip; `externalId` is the event id.
"""
import enum
import glob
import json
import os
import sys
import typing

from ocsf.v1_7_0 import events, objects  # pydantic-ocsf, OCSF 1.7.0
import pydantic
import cefp

HERE = os.path.dirname(os.path.abspath(__file__))
SNAPS = os.path.join(HERE, "..", "it", "snapshots")
MODELS = {}
SPECIAL = "Zoë | a=b \\ c\nd\r ☃ 🙂"

# OCSF class uid -> model name in pydantic-ocsf's 1.7.0 events namespace.
CLASSES = {
    0: "BaseEvent",
    2004: "DetectionFinding",
    3001: "AccountChange",
    3002: "Authentication",
    3004: "EntityManagement",
    3006: "GroupManagement",
    5001: "InventoryInfo",
    5003: "UserInventory",
    5023: "CloudResourcesInventoryInfo",
    6003: "ApiActivity",
}


def model(name):
    m = getattr(events, name)
    if name == "BaseEvent":
        # The package leaves BaseEvent's forward references unresolved: resolve them from
        # the same 1.7.0 namespaces.
        status = typing.get_args(events.Authentication.model_fields["status_id"].annotation)[0]
        ns = {n: getattr(objects, n) for n in ("Enrichment", "Metadata", "Observable", "Fingerprint", "Object")}
        ns["StatusId"] = status
        ns["SerializeAsAny"] = pydantic.SerializeAsAny
        m.model_rebuild(_types_namespace=ns)
    return m


def load(path):
    text = open(path, encoding="utf-8").read()
    # insta snapshot: a YAML header between two '---' lines, then the JSON.
    body = text.split("\n---\n", 1)[1]
    return json.loads(body)


def model_of(annotation):
    """The pydantic model or enum inside Optional[...] / list[...] / Annotated[...]."""
    origin = typing.get_origin(annotation)
    if origin is None:
        return annotation
    for arg in typing.get_args(annotation):
        if arg is type(None):
            continue
        found = model_of(arg)
        if isinstance(found, type) and (issubclass(found, pydantic.BaseModel) or issubclass(found, enum.Enum)):
            return found
    return None


def walk(value, model, path, errors):
    if isinstance(value, list):
        for i, item in enumerate(value):
            walk(item, model, f"{path}[{i}]", errors)
        return
    if not isinstance(model, type):
        return
    if issubclass(model, enum.Enum):
        if value not in {m.value for m in model}:
            errors.append(f"{path}: {value!r} is not a valid {model.__name__}")
        return
    if not issubclass(model, pydantic.BaseModel) or not isinstance(value, dict):
        return
    fields = {}
    for name, field in model.model_fields.items():
        fields[field.alias or name] = field
    for key, item in value.items():
        where = f"{path}.{key}" if path else key
        if where == "unmapped":
            continue
        if key not in fields:
            errors.append(f"{where}: not defined by {model.__name__}")
            continue
        walk(item, model_of(fields[key].annotation), where, errors)


def check_event(ev, where):
    """The errors of one OCSF event (empty when it is valid)."""
    errors = []
    uid = ev.get("class_uid")
    name = CLASSES.get(uid)
    if name is None:
        return [f"{where}: unexpected class_uid {uid}"]
    model = MODELS.setdefault(name, globals()['model'](name))
    try:
        model.model_validate(ev)
    except pydantic.ValidationError as e:
        errors.append(str(e))
    walk(ev, model, "", errors)
    if ev.get("type_uid") != uid * 100 + ev.get("activity_id", -1):
        errors.append(f"type_uid {ev.get('type_uid')} != class_uid*100+activity_id")
    if ev.get("category_uid") != uid // 1000:
        errors.append(f"category_uid {ev.get('category_uid')} for class {uid}")
    meta = ev.get("metadata", {})
    if meta.get("version") != "1.7.0":
        errors.append(f"metadata.version {meta.get('version')!r}")
    if meta.get("product", {}).get("name") != "Duo":
        errors.append("metadata.product.name")
    if "_duo_collector" not in ev.get("unmapped", {}):
        errors.append("unmapped._duo_collector missing")
    if ev.get("activity_id") == 99 and not ev.get("activity_name"):
        errors.append("activity_id 99 without activity_name")
    if errors:
        return [f"{where} ({name}): " + "; ".join(errors)]
    return []


def check_events(label, events):
    failures = []
    for i, ev in enumerate(events):
        failures += check_event(ev, f"{label}[{i}]")
    return len(events), failures


def check_ocsf(path):
    return check_events(os.path.basename(path), load(path))


def load_ndjson(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def walk_rejects_violations(sample):
    """The walk finds an attribute OCSF does not define: `auth_factors[].device.port`."""
    bad = json.loads(json.dumps(sample))
    bad["auth_factors"] = [{"factor_type_id": 5, "device": {"type_id": 0, "ip": "192.0.2.1", "port": 1234}}]
    good = json.loads(json.dumps(bad))
    del good["auth_factors"][0]["device"]["port"]
    if check_event(good, "self-check"):
        return f"self-check: the event without device.port fails: {check_event(good, 'self-check')}"
    found = check_event(bad, "self-check")
    if not any("auth_factors[0].device.port: not defined by Device" in f for f in found):
        return f"self-check: auth_factors[0].device.port was not rejected ({found})"
    return None


def check_cef(path):
    n = 0
    failures = []
    for i, item in enumerate(load(path)):
        line = item["line"]
        where = f"{os.path.basename(path)}[{i}]"
        try:
            parsed = cefp.CEFParser.parse(line)
        except Exception as e:  # noqa: BLE001
            failures.append(f"{where}: cefp cannot parse: {e}: {line}")
            continue
        dev = parsed["device"]
        if (parsed["version"], dev["vendor"], dev["product"]) != ("0", "Cisco", "Duo"):
            failures.append(f"{where}: header {parsed}")
        if not parsed["severity"].isdigit() or not 0 <= int(parsed["severity"]) <= 10:
            failures.append(f"{where}: severity {parsed['severity']!r}")
        ext = parsed["extension"]
        if ext.get("externalId") != item["event_id"]:
            failures.append(f"{where}: externalId {ext.get('externalId')!r} != {item['event_id']!r}")
        for key in ext:
            if key.startswith("cs") and not key.endswith("Label") and f"{key}Label" not in ext:
                failures.append(f"{where}: {key} without {key}Label")
        if item["special"]:
            if SPECIAL not in ext.values():
                failures.append(f"{where}: special characters did not round-trip: {ext}")
            header_special = SPECIAL.replace("\n", " ").replace("\r", " ")
            kind = os.path.basename(path).split("__")[1].rsplit("_", 1)[0]
            if kind in ("administrator", "offline_enrollment", "telephony") and header_special not in dev["event_class_id"]:
                failures.append(f"{where}: header did not round-trip: {dev['event_class_id']!r}")
        n += 1
    return n, failures


def main():
    args = sys.argv[1:]
    event_files = []
    if args[:1] == ["--events"]:
        event_files = args[1:]
    elif args:
        sys.exit(f"usage: {sys.argv[0]} [--events FILE...]")
    total = {"ocsf": 0, "cef": 0, "events": 0}
    failures = []
    goldens = sorted(glob.glob(os.path.join(SNAPS, "it__normalize_golden__*_ocsf.snap")))
    # The inventory and its change events (tests/it/inventory_golden.rs).
    goldens += sorted(glob.glob(os.path.join(SNAPS, "it__inventory_golden__*_ocsf.snap")))
    # verify-user's outcome event (tests/it/verify_user.rs).
    goldens += sorted(glob.glob(os.path.join(SNAPS, "it__verify_user__*_ocsf.snap")))
    auth = [ev for p in goldens if "authentication" in p for ev in load(p) if ev.get("class_uid") == 3002]
    broken = walk_rejects_violations(auth[0]) if auth else "self-check: no authentication golden"
    if broken:
        print("FAIL", broken)
        sys.exit(1)
    for path in goldens:
        n, f = check_ocsf(path)
        total["ocsf"] += n
        failures += f
    cef_goldens = sorted(glob.glob(os.path.join(SNAPS, "it__normalize_golden__*_cef.snap")))
    cef_goldens += sorted(glob.glob(os.path.join(SNAPS, "it__inventory_golden__*_cef.snap")))
    cef_goldens += sorted(glob.glob(os.path.join(SNAPS, "it__verify_user__*_cef.snap")))
    for path in cef_goldens:
        n, f = check_cef(path)
        total["cef"] += n
        failures += f
    for path in event_files:
        events = load_ndjson(path)
        n, f = check_events(os.path.basename(path), events)
        if n == 0:
            f.append(f"{path}: no events")
        total["events"] += n
        failures += f
    for f in failures[:200]:
        print("FAIL", f)
    if len(failures) > 200:
        print(f"... and {len(failures) - 200} more")
    drained = f"; {total['events']} drained events checked" if event_files else ""
    print(f"ocsf: {total['ocsf']} events checked against OCSF 1.7.0; cef: {total['cef']} lines parsed{drained}; {len(failures)} failures")
    if failures or total["ocsf"] == 0 or total["cef"] == 0:
        sys.exit(1)


if __name__ == "__main__":
    main()
