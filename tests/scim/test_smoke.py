def test_smoke(scim):
    u = scim.a.create_user("bjensen", emails=[{"value": "bjensen@acme.com", "type": "work", "primary": True}], password="s3cret")
    print(u)
    r = scim.a.get("/Users", query={"filter": 'userName eq "BJENSEN"'})
    print(r)
    r = scim.a.get("/Users", query={"filter": 'emails[type eq "work" and value co "@"]', "sortBy": "userName"})
    print(r)
    g = scim.a.create_group("Eng", [u["id"]])
    print(g)
    r = scim.a.patch(f"/Groups/{g['id']}", [{"op": "Remove", "path": "members", "value": [{"value": u["id"]}]}])
    print(r)
    print(scim.a.get(f"/Groups/{g['id']}"))
    print(scim.reconciliations.calls)
    assert 0
