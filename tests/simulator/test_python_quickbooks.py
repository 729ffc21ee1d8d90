"""Fidelity: the independent clients intuit-oauth and python-quickbooks work against the
simulator unmodified, apart from their base URLs (discovery URL and ``api_url_v3``)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from urllib.parse import parse_qs, urlparse
from zoneinfo import ZoneInfo

import pytest
import requests
from intuitlib.client import AuthClient
from intuitlib.enums import Scopes
from intuitlib.exceptions import AuthClientError
from quickbooks import QuickBooks
from quickbooks.batch import batch_create
from quickbooks.cdc import change_data_capture
from quickbooks.exceptions import AuthorizationException, QuickbooksException, ValidationException
from quickbooks.objects.base import LinkedTxn, Ref
from quickbooks.objects.customer import Customer
from quickbooks.objects.detailline import SalesItemLine, SalesItemLineDetail
from quickbooks.objects.invoice import Invoice
from quickbooks.objects.item import Item
from quickbooks.objects.payment import Payment, PaymentLine
from simtools import ThreadedServer

REDIRECT = "http://127.0.0.1:8000/callback"


@pytest.fixture
def connected(
    threaded_sim: ThreadedServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[AuthClient, QuickBooks]]:
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")  # plain http on loopback
    monkeypatch.setattr(QuickBooks, "api_url_v3", threaded_sim.base_url + "/v3")
    auth = AuthClient(
        "sim-client-id",
        "sim-client-secret",
        REDIRECT,
        threaded_sim.base_url + "/.well-known/openid_configuration/",
    )
    url = auth.get_authorization_url([Scopes.ACCOUNTING])
    resp = requests.get(url, allow_redirects=False, timeout=5)
    assert resp.status_code == 302
    cb = {k: v[0] for k, v in parse_qs(urlparse(resp.headers["Location"]).query).items()}
    assert cb["state"] == auth.state_token
    auth.get_bearer_token(cb["code"], realm_id=cb["realmId"])
    assert auth.access_token and auth.refresh_token and auth.expires_in == 3600
    qb = QuickBooks(
        auth_client=auth,
        refresh_token=auth.refresh_token,
        company_id=cb["realmId"],
        minorversion=75,
    )
    yield auth, qb


def test_refresh_and_revoke(
    connected: tuple[AuthClient, QuickBooks], threaded_sim: ThreadedServer
) -> None:
    auth, _ = connected
    old_access = auth.access_token
    auth.refresh()
    assert auth.access_token != old_access and auth.x_refresh_token_expires_in > 0
    assert auth.revoke(token=auth.refresh_token) is True
    with pytest.raises(AuthClientError) as info:
        auth.refresh()
    assert info.value.status_code == 400 and b"invalid_grant" in info.value.content
    assert info.value.intuit_tid


def test_crud_query_and_errors(connected: tuple[AuthClient, QuickBooks]) -> None:
    _, qb = connected
    cust = Customer()
    cust.DisplayName = "Amy's Bird Sanctuary"
    cust.GivenName = "Amy"
    saved = cust.save(qb=qb, request_id="create-amy")
    assert cust.Id and saved.SyncToken == "0"
    fetched = Customer.get(cust.Id, qb=qb)
    assert fetched.DisplayName == "Amy's Bird Sanctuary"
    fetched.CompanyName = "Birds Inc"
    assert fetched.save(qb=qb).SyncToken == "1"  # full update
    found = Customer.filter(DisplayName="Amy's Bird Sanctuary", qb=qb)
    assert [c.Id for c in found] == [cust.Id] and found[0].CompanyName == "Birds Inc"
    assert Customer.count(qb=qb) == 1
    assert [c.Id for c in Customer.all(qb=qb)] == [cust.Id]
    assert [c.Id for c in Customer.where("Active = true", order_by="DisplayName", qb=qb)] == [
        cust.Id
    ]
    saved.Notes = "stale write"
    with pytest.raises(QuickbooksException) as info:
        saved.save(qb=qb)  # still holds SyncToken 0
    assert info.value.error_code == 5010
    dup = Customer()
    dup.DisplayName = "Amy's Bird Sanctuary"
    with pytest.raises(QuickbooksException) as info:
        dup.save(qb=qb)
    assert info.value.error_code == 6240
    with pytest.raises(ValidationException):
        Customer.where("Nope = '1'", qb=qb)


def test_invoice_payment_void_delete(connected: tuple[AuthClient, QuickBooks]) -> None:
    _, qb = connected
    cust = Customer()
    cust.DisplayName = "Red Rock Diner"
    cust.save(qb=qb)
    item = Item()
    item.Name = "Consulting"
    item.Type = "Service"
    item.UnitPrice = 75
    item.IncomeAccountRef = Ref()
    item.IncomeAccountRef.value = "2"
    item.save(qb=qb)
    line = SalesItemLine()
    line.Amount = 150
    line.SalesItemLineDetail = SalesItemLineDetail()
    line.SalesItemLineDetail.ItemRef = item.to_ref()
    line.SalesItemLineDetail.Qty = 2
    line.SalesItemLineDetail.UnitPrice = 75
    inv = Invoice()
    inv.CustomerRef = cust.to_ref()
    inv.Line = [line]
    created = inv.save(qb=qb)
    assert created.TotalAmt == 150 and created.Balance == 150
    pay = Payment()
    pay.CustomerRef = cust.to_ref()
    pay.TotalAmt = 100
    pline = PaymentLine()
    pline.Amount = 100
    link = LinkedTxn()
    link.TxnId = inv.Id
    link.TxnType = "Invoice"
    pline.LinkedTxn = [link]
    pay.Line = [pline]
    pay.save(qb=qb)
    assert Invoice.get(inv.Id, qb=qb).Balance == 50
    pay.void(qb=qb)  # operation=update&include=void
    assert Payment.get(pay.Id, qb=qb).TotalAmt == 0
    assert Invoice.get(inv.Id, qb=qb).Balance == 150
    fresh = Payment.get(pay.Id, qb=qb)
    fresh.delete(qb=qb)
    inv = Invoice.get(inv.Id, qb=qb)
    inv.void(qb=qb)  # operation=void
    assert Invoice.get(inv.Id, qb=qb).TotalAmt == 0


def test_batch_and_cdc(connected: tuple[AuthClient, QuickBooks]) -> None:
    _, qb = connected
    # the library drops the offset; QBO reads an offset-less time in the company's zone
    since = datetime.now(ZoneInfo("America/Los_Angeles")) - timedelta(minutes=1)
    customers = []
    for n in range(35):  # python-quickbooks splits into batches of 30
        c = Customer()
        c.DisplayName = f"Batch Customer {n}"
        customers.append(c)
    customers[3].DisplayName = customers[2].DisplayName  # one per-item fault
    result = batch_create(customers, qb=qb)
    assert len(result.successes) == 34 and len(result.faults) == 1
    assert result.faults[0].Error[0].code == "6240"
    cdc = change_data_capture([Customer, Invoice], since, qb=qb)
    assert len(cdc.Customer) == 34 and not hasattr(cdc, "Invoice")
    # nothing changed at all: "QueryResponse": [{}] parses to an empty result
    later = datetime.now(ZoneInfo("America/Los_Angeles")) + timedelta(minutes=1)
    empty = change_data_capture([Customer, Invoice], later, qb=qb)
    assert not hasattr(empty, "Customer") and not hasattr(empty, "Invoice")


def test_expired_access_token_raises_authorization_error(
    connected: tuple[AuthClient, QuickBooks], threaded_sim: ThreadedServer
) -> None:
    _, qb = connected
    threaded_sim.state.oauth.expire_tokens(None, "access", threaded_sim.state.clock.now())
    with pytest.raises(AuthorizationException):
        Customer.all(qb=qb)
