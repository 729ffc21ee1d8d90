"""Real-shaped QBO answers for the client's unit tests (no imports beyond the standard library:
the tests that use them also run under Debian's python3).

`DOC_*` follow the samples of the team's QBO reference (Intuit's published shapes; digest in
docs/qbo-api-notes.md). `SIM_*` are the simulator's own bodies, byte for byte as
simulator/errors.py and simulator/faults.py render them (tests/simulator/test_qbo_client_over_http.py
provokes each from the running simulator and checks that the client reads them the same way, so
the copies cannot drift). Each `SIM_*` is (HTTP status, content type, body).
"""

from __future__ import annotations

# ----------------------------------------------------------------------------- success

DOC_CUSTOMER = (
    '{"Customer": {"Id": "67", "SyncToken": "0", "domain": "QBO", "sparse": false,'
    ' "DisplayName": "King\'s Groceries", "GivenName": "James", "FamilyName": "King",'
    ' "Active": true, "Balance": 0, "BalanceWithJobs": 0,'
    ' "MetaData": {"CreateTime": "2015-07-23T10:58:12-07:00",'
    ' "LastUpdatedTime": "2015-07-23T10:58:12-07:00"}},'
    ' "time": "2015-07-23T10:58:12.099-07:00"}'
)

DOC_INVOICE = (
    '{"Invoice": {"Id": "239", "SyncToken": "0", "DocNumber": "INV-1001",'
    ' "CustomerRef": {"value": "1", "name": "Amy\'s Bird Sanctuary"},'
    ' "Line": [{"Id": "1", "LineNum": 1, "Amount": 150.0, "DetailType": "SalesItemLineDetail",'
    ' "SalesItemLineDetail": {"ItemRef": {"value": "1"}, "Qty": 2, "UnitPrice": 75}},'
    ' {"Amount": 150.0, "DetailType": "SubTotalLineDetail", "SubTotalLineDetail": {}}],'
    ' "TotalAmt": 362.07, "Balance": 362.07},'
    ' "time": "2025-11-10T10:33:39.11-08:00"}'
)

DOC_INVOICE_DELETED = (
    '{"Invoice": {"status": "Deleted", "domain": "QBO", "Id": "33"},'
    ' "time": "2013-03-15T00:18:15.322-07:00"}'
)

DOC_QUERY = (
    '{"QueryResponse": {"Customer": [{"Id": "1", "DisplayName": "Amy\'s Bird Sanctuary"},'
    ' {"Id": "2", "DisplayName": "Bill\'s Windsurf Shop"}], "startPosition": 1, "maxResults": 2},'
    ' "time": "2015-07-23T11:02:25.149-07:00"}'
)

DOC_QUERY_EMPTY = '{"QueryResponse": {}, "time": "2015-07-23T11:02:25.149-07:00"}'

DOC_QUERY_COUNT = '{"QueryResponse": {"totalCount": 5}, "time": "2015-07-23T11:02:25.149-07:00"}'

DOC_CDC = """{
  "CDCResponse": [
    {"QueryResponse": [
      {"Customer": [{"Id": "63", "SyncToken": "2", "DisplayName": "Cool Cars"}],
       "startPosition": 1, "maxResults": 1},
      {"Invoice": [
         {"Id": "130", "SyncToken": "4", "TotalAmt": 1000.5},
         {"status": "Deleted", "domain": "QBO", "Id": "979",
          "MetaData": {"LastUpdatedTime": "2015-12-23T12:55:50-08:00"}}
       ],
       "startPosition": 1, "totalCount": 2, "maxResults": 2}
    ]}
  ],
  "time": "2015-12-23T12:56:06.196-08:00"
}"""

DOC_CDC_EMPTY = (
    '{"CDCResponse": [{"QueryResponse": [{}]}], "time": "2015-12-23T12:56:06.196-08:00"}'
)

DOC_BATCH = """{"BatchItemResponse": [
  {"bId": "c1", "Fault": {"type": "ValidationFault", "Error": [{"Message": "Duplicate Name Exists Error", "code": "6240", "Detail": "The name supplied already exists. : Another customer, vendor or employee is already using this name. Please use a different name.", "element": ""}]}},
  {"bId": "u1", "Invoice": {"Id": "238", "SyncToken": "1", "DueDate": "2025-12-31"}},
  {"bId": "d1", "Invoice": {"status": "Deleted", "domain": "QBO", "Id": "129"}},
  {"bId": "s1", "Fault": {"type": "ValidationFault", "Error": [{"Message": "Stale Object Error", "code": "5010", "Detail": "Stale Object Error : You and Jane Doe were working on this at the same time.", "element": ""}]}},
  {"bId": "q1", "QueryResponse": {"Invoice": [{"Id": "241", "TotalAmt": 400.0}], "startPosition": 1, "maxResults": 1}}
 ],
 "time": "2016-04-15T09:01:18.141-07:00"}"""

DOC_TOKEN = """{
  "token_type": "bearer",
  "access_token": "eyJlbmMiOiJBMTI4Q0JDLUhTMjU2IiwiYWxnIjoiZGlyIn0..c2FtcGxlLWFjY2Vzcy10b2tlbg",
  "refresh_token": "RT1-39-H3-1785429816rcysb9dns1ofreknypnm",
  "expires_in": 3600,
  "x_refresh_token_expires_in": 8726400,
  "x_refresh_token_hard_expires_in": 156032154
}"""

# ----------------------------------------------------------------------------- errors (docs)

DOC_STALE_FAULT = """{"Fault": {"Error": [{"Message": "Stale Object Error",
                      "Detail": "Stale Object Error : You and Jane Doe were working on this at the same time. Jane Doe finished before you did, so your work was not saved.",
                      "code": "5010", "element": ""}],
           "type": "ValidationFault"},
 "time": "2017-09-29T09:17:31.892-07:00"}"""

#: two errors in one fault (Error is a list)
DOC_TWO_ERRORS = """{"Fault": {"Error": [
   {"Message": "Required param missing, need to supply the required value for the API",
    "Detail": "Required parameter Line is missing in the request", "code": "2020", "element": "Line"},
   {"Message": "Invalid Reference Id", "Detail": "Invalid Reference Id : CustomerRef assigned is invalid: 999",
    "code": "2500", "element": "CustomerRef"}],
  "type": "ValidationFault"}, "time": "2017-09-29T09:17:31.892-07:00"}"""

#: the gateway's 401: lowercase keys, epoch-ms time, the start of the token in the detail
DOC_GATEWAY_401 = """{"warnings": null, "intuitObject": null,
 "fault": {"error": [{"message": "message=AuthenticationFailed; errorCode=003200; statusCode=401",
                      "detail": "Token expired: AB01730024136…", "code": "3200", "element": null}],
           "type": "AUTHENTICATION"},
 "report": null, "queryResponse": null, "batchItemResponse": [], "attachableResponse": [],
 "syncErrorResponse": null, "requestId": null, "time": 1730024394085, "status": null, "cdcresponse": []}"""

DOC_XML_THROTTLE = """<IntuitResponse xmlns="http://schema.intuit.com/finance/v3" time="2017-07-30T22:45:22.933-07:00">
  <Fault type="SERVICE"><Error code="3001">
    <Message>message=ThrottleExceeded; errorCode=003001; statusCode=429</Message>
    <Detail>The request limit was reached.  Try again later</Detail></Error></Fault></IntuitResponse>"""

DOC_SYSTEM_FAULT = (
    '{"Fault": {"Error": [{"Message": "An application error has occurred while processing your'
    ' request", "Detail": "System Failure Error: java.lang.NullPointerException", "code": "10000",'
    ' "element": ""}], "type": "SystemFault"}, "time": "2017-09-29T09:17:31.892-07:00"}'
)

DOC_INVALID_GRANT = '{"error": "invalid_grant", "error_description": "Token invalid"}'
DOC_INVALID_GRANT_BARE = '{"error":"invalid_grant"}'
DOC_INVALID_CLIENT = '{"error":"invalid_client"}'
DOC_INVALID_REQUEST = '{"error":"invalid_request"}'

HTML_502 = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)

# ----------------------------------------------------------------------------- errors (simulator)

SIM_DUPLICATE_NAME = (
    400,
    "application/json",
    '{"Fault":{"Error":[{"Message":"Duplicate Name Exists Error","Detail":"The name supplied '
    "already exists. : Another customer, vendor or employee is already using this name. Please "
    'use a different name.","code":"6240","element":""}],"type":"ValidationFault"},'
    '"time":"2025-11-10T10:40:00.000-08:00"}',
)

SIM_NOT_FOUND = (
    400,
    "application/json",
    '{"Fault":{"Error":[{"Message":"Object Not Found","Detail":"Object Not Found : Something '
    "you're trying to use has been made inactive. Check the fields with accounts, customers, "
    'items, vendors or employees. (Customer Id=999)","code":"610","element":""}],'
    '"type":"ValidationFault"},"time":"2025-11-10T10:40:00.000-08:00"}',
)

SIM_STALE = (
    400,
    "application/json",
    '{"Fault":{"Error":[{"Message":"Stale Object Error","Detail":"Stale Object Error : You and '
    "Sim User were working on this at the same time. Sim User finished before you did, so your "
    'work was not saved. (Customer)","code":"5010","element":""}],"type":"ValidationFault"},'
    '"time":"2025-11-10T10:40:00.000-08:00"}',
)

SIM_GATEWAY_401 = (
    401,
    "application/json",
    '{"warnings":null,"intuitObject":null,"fault":{"error":[{"message":"message='
    'AuthenticationFailed; errorCode=003200; statusCode=401","detail":"Token expired","code":'
    '"3200","element":null}],"type":"AUTHENTICATION"},"report":null,"queryResponse":null,'
    '"batchItemResponse":[],"attachableResponse":[],"syncErrorResponse":null,"requestId":null,'
    '"time":1762800000000,"status":null,"cdcresponse":[]}',
)

SIM_GATEWAY_403 = (
    403,
    "application/json",
    '{"warnings":null,"intuitObject":null,"fault":{"error":[{"message":"message='
    'ApplicationAuthorizationFailed; errorCode=003100; statusCode=403","detail":"The access '
    'token is not authorized for this company (realmId)","code":"3100","element":null}],'
    '"type":"SERVICE"},"report":null,"queryResponse":null,"batchItemResponse":[],'
    '"attachableResponse":[],"syncErrorResponse":null,"requestId":null,"time":1762800000000,'
    '"status":null,"cdcresponse":[]}',
)

SIM_GENERAL_AUTH = (
    401,
    "application/json",
    '{"Fault":{"Error":[{"Message":"General Authentication Error","Detail":'
    '"AuthenticationErrorGeneral: SRV-110-Authentication Failure , statusCode: 401","code":'
    '"100","element":""}],"type":"AuthenticationFault"},"time":"2025-11-10T10:40:00.000-08:00"}',
)

SIM_WRONG_CLUSTER = (
    401,
    "application/json",
    '{"Fault":{"Error":[{"Message":"Accessing Wrong Cluster","Detail":"Accessing Wrong Cluster: '
    'company is on the production cluster, request reached the sandbox cluster","code":"130",'
    '"element":""}],"type":"AuthenticationFault"},"time":"2025-11-10T10:40:00.000-08:00"}',
)

SIM_THROTTLE_XML = (
    429,
    "application/xml",
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<IntuitResponse xmlns='
    '"http://schema.intuit.com/finance/v3" time="2025-11-10T10:40:00.000-08:00"><Fault type='
    '"SERVICE"><Error code="3001"><Message>message=ThrottleExceeded; errorCode=003001; '
    "statusCode=429</Message><Detail>The request limit was reached.  Try again later</Detail>"
    "</Error></Fault></IntuitResponse>",
)

SIM_THROTTLE_JSON = (
    429,
    "application/json",
    '{"Fault":{"Error":[{"Message":"message=ThrottleExceeded; errorCode=003001; statusCode=429",'
    '"Detail":"The request limit was reached.  Try again later","code":"3001","element":""}],'
    '"type":"SERVICE"},"time":"2025-11-10T10:40:00.000-08:00"}',
)

SIM_SYSTEM_FAULT = (
    500,
    "application/json",
    '{"Fault":{"Error":[{"Message":"An application error has occurred while processing your '
    'request","Detail":"System Failure Error: An unexpected error occurred (simulated)","code":'
    '"10000","element":""}],"type":"SystemFault"},"time":"2025-11-10T10:40:00.000-08:00"}',
)

SIM_503 = (503, "text/html", "<html><body>503 Service Unavailable</body></html>")
SIM_504 = (504, "text/html", "<html><body>504 Gateway Time-out</body></html>")

SIM_INVALID_GRANT = (
    400,
    "application/json",
    '{"error":"invalid_grant","error_description":"Incorrect or invalid refresh token"}',
)
SIM_INVALID_CLIENT = (401, "application/json", '{"error":"invalid_client"}')

#: name -> (sample, code, error class name, source) for the table-driven tests
SIM_ERRORS = {
    "SIM_DUPLICATE_NAME": (SIM_DUPLICATE_NAME, "6240", "QboRequestRejected", "fault"),
    "SIM_NOT_FOUND": (SIM_NOT_FOUND, "610", "QboRequestRejected", "fault"),
    "SIM_STALE": (SIM_STALE, "5010", "QboRequestRejected", "fault"),
    "SIM_GATEWAY_401": (SIM_GATEWAY_401, "3200", "QboUnauthorized", "gateway"),
    "SIM_GATEWAY_403": (SIM_GATEWAY_403, "3100", "QboForbidden", "gateway"),
    "SIM_GENERAL_AUTH": (SIM_GENERAL_AUTH, "100", "QboUnauthorized", "fault"),
    "SIM_WRONG_CLUSTER": (SIM_WRONG_CLUSTER, "130", "QboUnauthorized", "fault"),
    "SIM_THROTTLE_XML": (SIM_THROTTLE_XML, "3001", "QboThrottled", "xml"),
    "SIM_THROTTLE_JSON": (SIM_THROTTLE_JSON, "3001", "QboThrottled", "fault"),
    "SIM_SYSTEM_FAULT": (SIM_SYSTEM_FAULT, "10000", "QboServerError", "fault"),
    "SIM_503": (SIM_503, None, "QboServerError", "http"),
    "SIM_504": (SIM_504, None, "QboUnreachable", "http"),
    "SIM_INVALID_GRANT": (SIM_INVALID_GRANT, "invalid_grant", "QboReconnectNeeded", "oauth"),
    "SIM_INVALID_CLIENT": (SIM_INVALID_CLIENT, "invalid_client", "QboUnauthorized", "oauth"),
}
