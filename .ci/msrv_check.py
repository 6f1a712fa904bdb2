import json, subprocess, sys
meta = json.loads(subprocess.check_output(
    ["cargo", "metadata", "--format-version", "1", "--all-features", "--locked",
     "--filter-platform", "x86_64-unknown-linux-gnu"]))
pkgs = {p["id"]: p for p in meta["packages"]}
ws = set(meta["workspace_members"])
def ver(s):
    return tuple(int(x) for x in (s.split(".") + ["0", "0"])[:3])
claims = {pkgs[i]["rust_version"] for i in ws if pkgs[i].get("rust_version")}
msrv = max(claims, key=ver)
nodes = {n["id"]: n for n in meta["resolve"]["nodes"]}
published = [i for i in ws if pkgs[i].get("publish") != []]
seen, stack = set(), list(published)
while stack:
    i = stack.pop()
    if i in seen:
        continue
    seen.add(i)
    for d in nodes[i]["deps"]:
        if any(k["kind"] in (None, "build") for k in d["dep_kinds"]):
            stack.append(d["pkg"])
bad, undeclared = [], []
for i in sorted(seen - ws, key=lambda i: pkgs[i]["name"]):
    p = pkgs[i]
    rv = p.get("rust_version")
    if rv is None:
        undeclared.append(f'{p["name"]} {p["version"]}')
    elif ver(rv) > ver(msrv):
        bad.append(f'{p["name"]} {p["version"]} needs Rust {rv}')
print(f"MSRV {msrv}: {len(seen - ws)} locked dependencies of the published crates (all features)")
if undeclared:
    print("  no rust-version declared (not checkable):", ", ".join(undeclared))
if bad:
    print("  NEWER THAN THE MSRV:", *bad, sep="\n    ")
    sys.exit(1)
print("  every declared rust-version is within the MSRV")
