import json, sys, urllib.request, base64, urllib.parse
BASE = sys.argv[1]
def req(method, path, user="guest", pw="guest", body=None):
    data = json.dumps(body).encode() if body is not None else None
    r = urllib.request.Request(BASE + path, data=data, method=method)
    r.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{pw}".encode()).decode())
    r.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(r) as resp:
            txt = resp.read().decode()
            return resp.status, txt
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
V = "acl-v"; E = urllib.parse.quote(V, safe=""); R = "%2F"
def setup():
    req("PUT", f"/api/vhosts/{E}", body={})
    req("PUT", f"/api/permissions/{E}/guest", body={"configure":".*","write":".*","read":".*"})
    for u, tags in [("acl-none",""),("acl-mgmt","management"),("acl-pol","policymaker"),("acl-mon","monitoring"),("acl-adm","administrator")]:
        req("PUT", f"/api/users/{u}", body={"password":"p","tags":tags})
        req("PUT", f"/api/permissions/{R}/{u}", body={"configure":".*","write":".*","read":".*"})
    for v in (E, R):
        req("PUT", f"/api/exchanges/{v}/acl-x", body={"type":"direct","durable":True})
        req("PUT", f"/api/queues/{v}/acl-q", body={"durable":True})
        req("POST", f"/api/bindings/{v}/e/acl-x/q/acl-q", body={"routing_key":"k"})
        req("PUT", f"/api/policies/{v}/acl-p", body={"pattern":"^zzz","definition":{"max-length":5}})
        req("PUT", f"/api/vhost-limits/{v}/max-connections", body={"value":100})
def rec(recs, m, p, u, b, st, txt):
    r = {"method": m, "path": p, "user": u, "status": st}
    if b is not None: r["body"] = b
    if st >= 300:
        try: r["reason"] = json.loads(txt).get("reason")
        except Exception: pass
    elif st == 200 and txt.startswith("["):
        items = json.loads(txt)
        vs = {i.get("vhost") for i in items if isinstance(i, dict)} | ({i.get("name") for i in items} if p == "/api/vhosts" else set())
        r["lists"] = {"/": "/" in vs, "acl-v": "acl-v" in vs}
    recs.append(r)
setup()
USERS = ["acl-none","acl-mgmt","acl-pol","acl-mon","acl-adm"]
gets = ["/api/overview","/api/whoami","/api/nodes","/api/extensions","/api/connections","/api/channels","/api/consumers",
 "/api/vhosts","/api/users","/api/users/acl-mgmt","/api/users/acl-mgmt/permissions","/api/permissions","/api/users/without-permissions",
 "/api/exchanges","/api/queues","/api/bindings","/api/vhost-limits","/api/user-limits","/api/policies","/api/definitions",
 "/api/health/checks/alarms","/api/health/checks/virtual-hosts","/api/parameters","/api/global-parameters"]
for v in (E, R):
    gets += [f"/api/vhosts/{v}", f"/api/vhosts/{v}/connections", f"/api/vhosts/{v}/channels", f"/api/consumers/{v}", f"/api/vhosts/{v}/permissions",
      f"/api/permissions/{v}/acl-mgmt", f"/api/exchanges/{v}", f"/api/exchanges/{v}/acl-x", f"/api/exchanges/{v}/acl-x/bindings/source",
      f"/api/exchanges/{v}/acl-x/bindings/destination", f"/api/queues/{v}", f"/api/queues/{v}/acl-q", f"/api/queues/{v}/acl-q/bindings",
      f"/api/bindings/{v}", f"/api/bindings/{v}/e/acl-x/q/acl-q", f"/api/bindings/{v}/e/acl-x/q/acl-q/k", f"/api/vhost-limits/{v}",
      f"/api/policies/{v}", f"/api/policies/{v}/acl-p", f"/api/definitions/{v}", f"/api/aliveness-test/{v}", f"/api/parameters/vhost-limits/{v}"]
out = []
recs = []
for u in USERS:
    for g in gets:
        st, txt = req("GET", g, u, "p")
        extra = ""
        if st == 200 and txt.startswith("["):
            try:
                items = json.loads(txt)
                vs = sorted({i.get("vhost") for i in items if isinstance(i, dict) and "vhost" in i} | {i.get("name") for i in items if isinstance(i, dict) and g=="/api/vhosts"})
                extra = " vhosts=" + ",".join(str(x) for x in vs)
            except Exception: pass
        if st != 200 and st != 204:
            try: extra = " " + json.dumps(json.loads(txt).get("reason"))
            except Exception: extra = " " + txt[:60]
        out.append(f"GET {g} {u} -> {st}{extra}")
        rec(recs, "GET", g, u, None, st, txt)
    for v in (E, R):
        muts = [("PUT", f"/api/exchanges/{v}/acl-x2", {"type":"fanout"}), ("DELETE", f"/api/exchanges/{v}/acl-x2", None),
          ("PUT", f"/api/queues/{v}/acl-q2", {}), ("POST", f"/api/queues/{v}/acl-q/get", {"count":1,"ackmode":"ack_requeue_true","encoding":"auto"}),
          ("DELETE", f"/api/queues/{v}/acl-q2/contents", None), ("DELETE", f"/api/queues/{v}/acl-q2", None),
          ("POST", f"/api/exchanges/{v}/acl-x/publish", {"properties":{},"routing_key":"k","payload":"x","payload_encoding":"string"}),
          ("POST", f"/api/bindings/{v}/e/acl-x/q/acl-q", {"routing_key":"k2"}), ("DELETE", f"/api/bindings/{v}/e/acl-x/q/acl-q/k2", None),
          ("PUT", f"/api/policies/{v}/acl-p2", {"pattern":"^yyy","definition":{"max-length":5}}), ("PUT", f"/api/policies/{v}/acl-p2", {"pattern":"^yyy","definition":{"max-length":6}}), ("DELETE", f"/api/policies/{v}/acl-p2", None),
          ("PUT", f"/api/vhost-limits/{v}/max-queues", {"value":100}), ("DELETE", f"/api/vhost-limits/{v}/max-queues", None),
          ("PUT", f"/api/permissions/{v}/acl-none", {"configure":"","write":"","read":""}), ("DELETE", f"/api/permissions/{v}/acl-none", None),
          ("POST", f"/api/definitions/{v}", {"queues":[]}),
        ]
        for m, p, b in muts:
            st, txt = req(m, p, u, "p", b)
            extra = ""
            if st >= 300:
                try: extra = " " + json.dumps(json.loads(txt).get("reason"))
                except Exception: extra = " " + txt[:60]
            out.append(f"{m} {p} {u} -> {st}{extra}")
            rec(recs, m, p, u, b, st, txt)
    for m, p, b in [("PUT","/api/vhosts/acl-v2",{}),("DELETE","/api/vhosts/acl-v2",None),("PUT","/api/users/acl-u2",{"password":"x","tags":""}),("DELETE","/api/users/acl-u2",None),("PUT","/api/global-parameters/acl-g",{"value":1}),("DELETE","/api/global-parameters/acl-g",None)]:
        st, txt = req(m, p, u, "p", b)
        extra = ""
        if st >= 300:
            try: extra = " " + json.dumps(json.loads(txt).get("reason"))
            except Exception: extra = " " + txt[:60]
        out.append(f"{m} {p} {u} -> {st}{extra}")
        rec(recs, m, p, u, b, st, txt)
if len(sys.argv) > 2:
    with open(sys.argv[2], "w") as f:
        for r in recs: f.write(json.dumps(r, sort_keys=True) + "\n")
print("\n".join(out))
