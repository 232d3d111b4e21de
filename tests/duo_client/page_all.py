"""Pages every inventory and log endpoint of the simulator with Duo's own client (duo_client).

Usage: page_all.py HOST:PORT  (keys and times come from the environment, see main()).
Prints one JSON object: per endpoint, what Duo's client returned (ids or whole records), and the
outcome of an Auth API push. The Rust test (tests/it/duo_client.rs) compares it with the
simulator's truth.
"""

import json
import os
import sys

import duo_client


def client(cls, ikey, skey, hostport):
    host, port = hostport.rsplit(":", 1)
    # The simulator serves plain HTTP. duo_client's `ca_certs="HTTP"` selects
    # http.client.HTTPConnection (client.py `_connect`), and `port` overrides the 80 it implies;
    # the request is still signed for `host` alone, as Duo's canonical string has no port. This
    # keeps every other line of the client (signing, paging, retries) as Duo wrote it, where a
    # subclass overriding `_connect` would replace part of it.
    return cls(ikey=ikey, skey=skey, host=host, port=int(port), ca_certs="HTTP")


def page_v2(call, records_key, **params):
    """A v2 log listing followed by `metadata.next_offset` until it is absent."""
    out, pages = [], 0
    next_offset = None
    while True:
        kwargs = dict(params)
        if next_offset is not None:
            kwargs["next_offset"] = next_offset
        resp = call(**kwargs)
        pages += 1
        out.extend(resp[records_key])
        next_offset = resp.get("metadata", {}).get("next_offset")
        # Handed back as Duo sent it: authentication's list goes out as repeated keys
        # (duo_client's normalize_params), the others' "ts,offset" string as it is.
        if not next_offset:
            return out, pages


def page_v1(call, mintime):
    """A v1 log: the 1000 earliest events at or after `mintime`; the resume second is asked again
    and the records already seen are skipped (as Duo's log sync does)."""
    out, seen = [], set()
    while True:
        rows = call(mintime=mintime)
        fresh = 0
        for row in rows:
            row.pop("eventtype", None)
            row.pop("host", None)
            key = json.dumps(row, sort_keys=True)
            if key not in seen:
                seen.add(key)
                out.append(row)
                fresh += 1
        if len(rows) < 1000 or fresh == 0:
            return out
        mintime = max(r["timestamp"] for r in rows)


def main():
    hostport = sys.argv[1]
    env = os.environ
    admin = client(duo_client.Admin, env["DUO_IKEY"], env["DUO_SKEY"], hostport)
    mintime_ms, maxtime_ms = int(env["MINTIME_MS"]), int(env["MAXTIME_MS"])
    out = {}

    users = admin.get_users()
    out["users"] = [u["user_id"] for u in users]
    out["user_phones"] = {u["user_id"]: sorted(p["phone_id"] for p in u["phones"]) for u in users}
    out["user_groups"] = {u["user_id"]: sorted(g["group_id"] for g in u["groups"]) for u in users}
    out["admins"] = [a["admin_id"] for a in admin.get_admins()]
    out["phones"] = [p["phone_id"] for p in admin.get_phones()]
    out["endpoints"] = [e["epkey"] for e in admin.get_endpoints()]
    integrations = admin.get_integrations()
    out["integrations"] = [i["integration_key"] for i in integrations]
    out["groups"] = [g["group_id"] for g in admin.get_groups()]
    out["summary"] = admin.get_info_summary()

    auth, out["authentication_pages"] = page_v2(
        lambda **kw: admin.get_authentication_log(api_version=2, **kw),
        "authlogs",
        mintime=mintime_ms,
        maxtime=maxtime_ms,
        # get_authentication_log passes its parameters through unconverted: strings only.
        limit="1000",
        sort="ts:asc",
    )
    out["authentication"] = [r["txid"] for r in auth]
    tel, _ = page_v2(
        lambda **kw: admin.get_telephony_log(api_version=2, **kw),
        "items",
        mintime=mintime_ms,
        maxtime=maxtime_ms,
        limit=1000,
        sort="asc",
    )
    out["telephony"] = [r["telephony_id"] for r in tel]
    act, _ = page_v2(
        admin.get_activity_logs,
        "items",
        mintime=mintime_ms,
        maxtime=maxtime_ms,
        limit=1000,
        sort="ts:asc",
    )
    out["activity"] = [r["activity_id"] for r in act]
    out["administrator"] = page_v1(admin.get_administrator_log, mintime_ms // 1000)
    out["offline_enrollment"] = page_v1(admin.get_offline_log, mintime_ms // 1000)
    out["trust_monitor"] = [
        e["sekey"]
        for e in admin.get_trust_monitor_events_iterator(mintime=mintime_ms, maxtime=maxtime_ms)
    ]

    if env.get("AUTH_IKEY"):
        auth_api = client(duo_client.Auth, env["AUTH_IKEY"], env["AUTH_SKEY"], hostport)
        username = env["PUSH_USERNAME"]
        pre = auth_api.preauth(username=username)
        txid = auth_api.auth(
            "push", username=username, device="auto", async_txn=True, pushinfo="from=duo_client"
        )["txid"]
        status = auth_api.auth_status(txid)
        while status.get("waiting"):
            status = auth_api.auth_status(txid)
        out["push"] = {
            "preauth_result": pre["result"],
            "devices": [d["device"] for d in pre.get("devices", [])],
            "txid": txid,
            "success": status["success"],
            "status": status["status"],
        }
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
