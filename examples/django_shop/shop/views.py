"""The shop's HTTP API (the contract is in examples/README.md).

Sync views use the ORM, as most Django code does; checkout and the password reset call the
providers through `lr.http_client_sync()`. The payment webhook is an async view: it awaits
`lr.idempotency.once()` and the async email client, and runs its queries in a worker thread.
Every input is checked by the rules both shops share (`examples/shopinput.py`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import httpx
from asgiref.sync import async_to_sync, iscoroutinefunction, sync_to_async
from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from examples.django_shop.shop.models import CartItem, Customer, Order, OrderItem, Product
from examples.django_shop.shop.services import config, log, lr, providers
from examples.shopcore import (
    CATEGORIES,
    CHARGE_PATH,
    CONFIRMATION_TEXT,
    EMAIL_PATH,
    EVENT_TTL_S,
    PROVIDER_ERRORS,
    PaymentEvent,
    Problem,
    charge_id_of,
    charge_request,
    check_payment,
    confirmation_subject,
    customer_of,
    dummy_password_hash,
    email_failed,
    email_request,
    hash_password,
    new_order_id,
    order_body,
    own_webhook_url,
    payment_event,
    payment_problem,
    problem_body,
    product_body,
    require_admin,
    sign_token,
    verify_password,
)
from examples.shopinput import (
    ADMIN_ORDERS_QUERY,
    CART_ITEM,
    LOGIN,
    MAX_LINE_QUANTITY,
    MAX_ORDER_TOTAL_CENTS,
    ORDER_PATH,
    PASSWORD_RESET,
    PRODUCT_PATCH,
    PRODUCTS_QUERY,
    SIGNUP,
    Invalid,
    Schema,
    json_object,
    path_id,
    read,
)

# --- errors: every one is problem+json carrying the request id ------------------------------


def problem(status: int, title: str, detail: str = "", **extra: Any) -> JsonResponse:
    body = problem_body(status, title, detail, **extra)
    return JsonResponse(body, status=status, content_type="application/problem+json")


def _answer(exc: Exception) -> JsonResponse:
    if isinstance(exc, Problem):
        return problem(exc.status, exc.title, exc.detail)
    if isinstance(exc, Invalid):
        return problem(
            422,
            "Invalid request",
            "The request body or parameters are invalid.",
            errors=exc.errors,
        )
    return problem(413, "Request body too large")


_EXPECTED = (Problem, Invalid, RequestDataTooBig)
View = Callable[..., Any]


def endpoint(*methods: str) -> Callable[[View], View]:
    """An API view: only `methods`, no CSRF (bearer tokens, no cookies), errors as problems."""
    allowed = set(methods) | ({"HEAD"} if "GET" in methods else set())

    def refuse() -> JsonResponse:
        response = problem(405, "Method not allowed")
        response["Allow"] = ", ".join(sorted(allowed))
        return response

    def decorate(view: View) -> View:
        if iscoroutinefunction(view):

            @functools.wraps(view)
            async def run_async(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                if request.method not in allowed:
                    return refuse()
                try:
                    return await view(request, *args, **kwargs)
                except _EXPECTED as exc:
                    return _answer(exc)

            return csrf_exempt(run_async)

        @functools.wraps(view)
        def run(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            if request.method not in allowed:
                return refuse()
            try:
                return view(request, *args, **kwargs)
            except _EXPECTED as exc:
                return _answer(exc)

        return csrf_exempt(run)

    return decorate


# --- who is asking ----------------------------------------------------------------------------


def customer_id(request: HttpRequest) -> int:
    return customer_of(config(), request.headers.get("Authorization"))


def body_of(request: HttpRequest, schema: Schema) -> dict[str, Any]:
    """The JSON body checked against `schema` (Invalid, a 422, otherwise)."""
    return read(schema, json_object(request.body), "body")


# --- catalog (cached by the SDK) --------------------------------------------------------------


@endpoint("GET")
def home(request: HttpRequest) -> JsonResponse:
    featured = Product.objects.filter(featured=True).order_by("id")
    return JsonResponse(
        {"featured": [product_body(p) for p in featured], "categories": list(CATEGORIES)}
    )


@endpoint("GET")
def list_products(request: HttpRequest) -> JsonResponse:
    params = read(PRODUCTS_QUERY, request.GET, "query")
    category, page, per_page = params["category"], params["page"], params["per_page"]
    products = Product.objects.order_by("id")
    if category is not None:
        products = products.filter(category=category)
    start = (page - 1) * per_page
    items = [product_body(p) for p in products[start : start + per_page]]
    return JsonResponse(
        {"items": items, "page": page, "per_page": per_page, "total": products.count()}
    )


@endpoint("GET")
def get_product(request: HttpRequest, id: str) -> JsonResponse:
    product = Product.objects.filter(pk=path_id(id)).first()
    if product is None:
        raise Problem(404, "No such product")
    return JsonResponse(product_body(product))


# --- accounts (rate-limited by the SDK's defaults) --------------------------------------------


@endpoint("POST")
def signup(request: HttpRequest) -> JsonResponse:
    fields = body_of(request, SIGNUP)
    customer = Customer(
        email=fields["email"].lower(),
        password_hash=hash_password(fields["password"]),
        name=fields["name"],
    )
    try:
        with transaction.atomic():
            customer.save()
    except IntegrityError:
        raise Problem(409, "Email already registered") from None
    log.info("user.signed_up", user_id=customer.id)
    token = sign_token(config().secret_key, customer.id)
    return JsonResponse({"id": customer.id, "email": customer.email, "token": token}, status=201)


@endpoint("POST")
def login(request: HttpRequest) -> JsonResponse:
    fields = body_of(request, LOGIN)
    customer = Customer.objects.filter(email=fields["email"].lower()).first()
    stored = customer.password_hash if customer is not None else dummy_password_hash()
    valid = verify_password(fields["password"], stored)
    if customer is None or not valid:
        raise Problem(401, "Invalid email or password")
    log.info("user.logged_in", user_id=customer.id)
    return JsonResponse({"token": sign_token(config().secret_key, customer.id)})


@endpoint("POST")
def password_reset(request: HttpRequest) -> JsonResponse:
    fields = body_of(request, PASSWORD_RESET)
    customer = Customer.objects.filter(email=fields["email"].lower()).first()
    if customer is not None:
        reset = sign_token(config().secret_key + ":reset", customer.id)
        send_email(customer.email, "Reset your password", f"Your reset code: {reset}")
    # The same answer either way, so the route does not reveal who has an account.
    return JsonResponse({"status": "sent"}, status=202)


def send_email(to: str, subject: str, text: str) -> bool:
    try:
        providers.email().post(EMAIL_PATH, **email_request(to, subject, text)).raise_for_status()
    except httpx.HTTPError as exc:
        return email_failed(exc, subject)
    return True


# --- cart and checkout ------------------------------------------------------------------------


def cart_lines(user_id: int) -> list[CartItem]:
    return list(
        CartItem.objects.filter(customer_id=user_id)
        .select_related("product")
        .order_by("product_id")
    )


def cart_body(lines: list[CartItem]) -> dict[str, Any]:
    items = [
        {
            "product_id": line.product_id,
            "name": line.product.name,
            "quantity": line.quantity,
            "price_cents": line.product.price_cents,
        }
        for line in lines
    ]
    return {"items": items, "total_cents": sum(i["quantity"] * i["price_cents"] for i in items)}


@endpoint("POST")
def add_to_cart(request: HttpRequest) -> JsonResponse:
    user_id = customer_id(request)
    fields = body_of(request, CART_ITEM)
    product_id, quantity = fields["product_id"], fields["quantity"]
    if not Product.objects.filter(pk=product_id).exists():
        raise Problem(404, "No such product")
    if not add_line(user_id, product_id, quantity):
        message = f"a cart line holds at most {MAX_LINE_QUANTITY} of a product"
        raise Invalid([{"loc": ["body", "quantity"], "msg": message}])
    return JsonResponse(cart_body(cart_lines(user_id)), status=201)


def add_line(user_id: int, product_id: int, quantity: int, *, clamp: bool = False) -> bool:
    """Create the cart line or add to it with an atomic `quantity = quantity + n` UPDATE, so
    concurrent adds never lose a quantity. False when the line would pass the cap (with
    `clamp`, it is filled to the cap instead)."""
    line = CartItem.objects.filter(customer_id=user_id, product_id=product_id)
    room = MAX_LINE_QUANTITY - quantity
    with transaction.atomic():
        for _ in range(2):
            if line.filter(quantity__lte=room).update(quantity=F("quantity") + quantity):
                return True
            if line.exists():  # full
                return clamp and bool(line.update(quantity=MAX_LINE_QUANTITY))
            try:
                with transaction.atomic():  # a savepoint: a concurrent insert may win
                    CartItem.objects.create(
                        customer_id=user_id, product_id=product_id, quantity=quantity
                    )
                return True
            except IntegrityError:
                continue  # the line exists now: add to it
    return False


@endpoint("GET")
def get_cart(request: HttpRequest) -> JsonResponse:
    return JsonResponse(cart_body(cart_lines(customer_id(request))))


@endpoint("POST")
def checkout(request: HttpRequest) -> JsonResponse:
    user_id = customer_id(request)
    lines = cart_lines(user_id)
    if not lines:
        raise Problem(409, "The cart is empty")
    order_id = new_order_id()
    total = sum(line.quantity * line.product.price_cents for line in lines)
    if total > MAX_ORDER_TOTAL_CENTS:
        raise Problem(422, "Order too large", f"An order totals at most {MAX_ORDER_TOTAL_CENTS}.")
    # One transaction moves the lines from the cart into a new order, so the provider's
    # webhook always finds the order and a second checkout of the same cart (another tab,
    # a double click without an Idempotency-Key) finds the lines gone. If the charge fails,
    # the order is deleted again and the lines go back to the cart.
    with transaction.atomic():
        for line in lines:
            taken, _ = CartItem.objects.filter(id=line.id, quantity=line.quantity).delete()
            if taken != 1:
                raise Problem(409, "The cart changed during checkout; try again")
        order = Order.objects.create(
            id=order_id, customer_id=user_id, status="awaiting_payment", total_cents=total
        )
        OrderItem.objects.bulk_create(
            OrderItem(
                order=order,
                product_id=line.product_id,
                name=line.product.name,
                quantity=line.quantity,
                price_cents=line.product.price_cents,
            )
            for line in lines
        )
    try:
        charge_id = create_charge(order_id, total, webhook_url(request))
    except BaseException:  # a failed charge, or an interrupted request: undo the order
        undo_order(user_id, order_id, [(line.product_id, line.quantity) for line in lines])
        raise
    with transaction.atomic():
        Order.objects.filter(id=order_id).update(charge_id=charge_id)
    log.info("order.created", order_id=order_id, amount_cents=total)
    return JsonResponse(
        {
            "order_id": order_id,
            "status": "awaiting_payment",
            "total_cents": total,
            "charge_id": charge_id,
        },
        status=201,
    )


def undo_order(user_id: int, order_id: str, lines: list[tuple[int, int]]) -> None:
    """Delete an order whose charge failed and put its lines back in the cart."""
    with transaction.atomic():
        Order.objects.filter(id=order_id).delete()
        for product_id, quantity in lines:
            add_line(user_id, product_id, quantity, clamp=True)


def webhook_url(request: HttpRequest) -> str:
    scope = getattr(request, "scope", None)
    if scope is not None:  # ASGI
        return own_webhook_url(scope.get("server"))
    # WSGI: the address gunicorn's socket listens on (never the client's Host header).
    sock = request.META.get("gunicorn.socket")
    return own_webhook_url(sock.getsockname()[:2] if sock is not None else None)


def create_charge(order_id: str, total: int, hook: str) -> str:
    try:
        response = providers.payment().post(CHARGE_PATH, **charge_request(order_id, total, hook))
        return charge_id_of(response)
    except PROVIDER_ERRORS as exc:
        raise payment_problem(exc, order_id) from None


@endpoint("GET")
def get_order(request: HttpRequest, order_id: str) -> JsonResponse:
    user_id = customer_id(request)
    order_id = read(ORDER_PATH, {"order_id": order_id}, "path")["order_id"]
    order = Order.objects.filter(id=order_id, customer_id=user_id).first()
    if order is None:
        raise Problem(404, "No such order")
    return JsonResponse(order_body(order, list(order.items.order_by("product_id"))))


# --- the payment provider's webhook: verified, applied once per event -------------------------


@endpoint("POST")
async def payment_webhook(request: HttpRequest) -> JsonResponse:
    event = payment_event(config(), request.body, request.headers.get("Payment-Signature"))
    order = await sync_to_async(_order_of)(event.order_id)
    new_status = event.order_status
    if order is None or new_status is None:
        return JsonResponse({"status": "ignored"})
    email, total_cents, charge_id = order
    check_payment(event, total_cents, charge_id)
    if not await lr().idempotency.once(event.once_key, ttl_s=EVENT_TTL_S):
        return JsonResponse({"status": "duplicate"})
    try:
        changed = await sync_to_async(_settle)(event, new_status)
    except BaseException:
        await lr().idempotency.forget(event.once_key)  # the provider's retry applies it
        raise
    if changed:
        log.info("order.payment", order_id=event.order_id, status=new_status)
        if new_status == "paid" and email:
            await send_email_async(email, confirmation_subject(event.order_id), CONFIRMATION_TEXT)
    return JsonResponse({"status": "processed"})


def _order_of(order_id: str) -> tuple[str, int, str | None] | None:
    """(customer email, total, charge id) of an order, or None when there is no such order."""
    found = (
        Order.objects.filter(id=order_id)
        .values_list("customer__email", "total_cents", "charge_id")
        .first()
    )
    if found is None:
        return None
    email, total, charge_id = found
    return str(email or ""), int(total), charge_id


def _settle(event: PaymentEvent, status: str) -> bool:
    # A conditional update: of any number of concurrent deliveries, one changes the order,
    # and only while it is the order's own charge.
    changed = Order.objects.filter(
        id=event.order_id,
        status="awaiting_payment",
        charge_id=event.charge_id,
        total_cents=event.amount_cents,
    ).update(status=status)
    return bool(changed == 1)


async def send_email_async(to: str, subject: str, text: str) -> bool:
    try:
        response = await providers.email_async().post(
            EMAIL_PATH, **email_request(to, subject, text)
        )
        response.raise_for_status()
    except httpx.HTTPError as exc:
        return email_failed(exc, subject)
    return True


# --- staff ------------------------------------------------------------------------------------


@endpoint("GET")
def admin_orders(request: HttpRequest) -> JsonResponse:
    require_admin(config(), request.headers.get("Authorization"))
    params = read(ADMIN_ORDERS_QUERY, request.GET, "query")
    status, limit = params["status"], params["limit"]
    orders = Order.objects.select_related("customer").order_by("-created_at")
    if status is not None:
        orders = orders.filter(status=status)
    page = list(orders[:limit])
    items: dict[str, list[OrderItem]] = {o.id: [] for o in page}
    for item in OrderItem.objects.filter(order_id__in=list(items)).order_by("product_id"):
        items[item.order_id].append(item)
    return JsonResponse(
        {"items": [{**order_body(o, items[o.id]), "user_email": o.customer.email} for o in page]}
    )


@endpoint("PATCH")
def edit_product(request: HttpRequest, id: str) -> JsonResponse:
    require_admin(config(), request.headers.get("Authorization"))
    product_id = path_id(id)
    fields = body_of(request, PRODUCT_PATCH)
    changes = {k: v for k, v in fields.items() if v is not None}
    with transaction.atomic():
        product = Product.objects.select_for_update().filter(pk=product_id).first()
        if product is None:
            raise Problem(404, "No such product")
        for key, value in changes.items():
            setattr(product, key, value)
        if changes:
            product.save(update_fields=list(changes))
    invalidate_product(product_id)
    log.info("product.edited", product_id=product_id, fields=sorted(changes))
    return JsonResponse(product_body(product))


def invalidate_product(product_id: int) -> None:
    """Drop the cached product page, the list and home (from a sync view or the admin)."""
    async_to_sync(_invalidate)(product_id)


async def _invalidate(product_id: int) -> None:
    for path in (f"/products/{product_id}", "/products", "/"):
        await lr().cache.invalidate(path)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """handler404: a problem, for browsers too (the shop is an API)."""
    return problem(404, "Not found")
