"""The bundled FastAPI shop: a small real shop that shows every SDK feature at work.

    uvicorn examples.fastapi_shop.app:app

Catalog and home are cached (and invalidated when an admin edits a product); sign-up, login,
password reset and the payment webhook are rate-limited; checkout is idempotent and calls the
payment provider through `lr.http_client()`; the webhook is verified, checked against the
order's charge, applied once per event, and confirms the order by email. Every input is checked
by the rules both shops share (`examples/shopinput.py`), which also describe it in OpenAPI. The
HTTP contract is in `examples/README.md`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, Header, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import case, delete, func, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import async_sessionmaker
from starlette.exceptions import HTTPException as StarletteHTTPException

from examples.fastapi_shop.db import (
    CartItem,
    Order,
    OrderItem,
    Product,
    User,
    create_and_seed,
    make_engine,
)
from examples.shopcore import (
    CATEGORIES,
    CHARGE_PATH,
    CONFIRMATION_TEXT,
    EMAIL_PATH,
    EVENT_TTL_S,
    PROVIDER_ERRORS,
    Problem,
    ShopConfig,
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
    sdk_overrides,
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
    openapi_body,
    openapi_query,
    path_id,
    read,
)
from launchready_sdk import LaunchReady, Settings, get_logger

config = ShopConfig.from_env("fastapi_shop")
lr = LaunchReady(Settings.from_env(**sdk_overrides("fastapi-shop")))
log = get_logger("shop")
engine = make_engine(config.database_url)
lr.instrument_sqlalchemy(engine)
Session = async_sessionmaker(engine, expire_on_commit=False)


class Providers:
    """The payment and email clients, made at start-up."""

    payment: httpx.AsyncClient
    email: httpx.AsyncClient


providers = Providers()


async def database_ready() -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))


lr.add_health_check("db", database_ready)


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    if await create_and_seed(engine, config.demo_password):
        log.info("shop.seeded", database=engine.dialect.name)
    if config.using_dev_secrets or config.payment_url is None:
        log.warning(
            "shop.dev_mode",
            hint="development mode: public secrets or the fake payment provider; "
            "set SHOP_SECRET_KEY, SHOP_WEBHOOK_SECRET, SHOP_DEMO_PASSWORD and PAYMENT_URL",
        )
    payment_url, email_url = config.payment_url, config.email_url
    server = None
    if payment_url is None:
        from examples.providers.background import start

        payment_url, server = await start()
        email_url = payment_url
        log.info("shop.fake_providers", url=payment_url)
    providers.payment = lr.http_client(base_url=payment_url)
    providers.email = lr.http_client(base_url=email_url or payment_url)
    yield
    await providers.payment.aclose()
    await providers.email.aclose()
    if server is not None:
        server.should_exit = True
    await engine.dispose()


api = FastAPI(title="launchready shop", version="1.0", lifespan=lifespan)


# Errors: every one is problem+json carrying the request id.


def problem(status: int, title: str, detail: str = "", **extra: Any) -> JSONResponse:
    body = problem_body(status, title, detail, **extra)
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


@api.exception_handler(Problem)
async def _problem(_: Request, exc: Problem) -> JSONResponse:
    return problem(exc.status, exc.title, exc.detail)


def invalid(errors: list[dict[str, Any]]) -> JSONResponse:
    return problem(
        422, "Invalid request", "The request body or parameters are invalid.", errors=errors
    )


@api.exception_handler(Invalid)
async def _invalid(_: Request, exc: Invalid) -> JSONResponse:
    return invalid(exc.errors)


@api.exception_handler(RequestValidationError)
async def _unparsed(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    return invalid(errors)


@api.exception_handler(StarletteHTTPException)
async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    return problem(exc.status_code, str(exc.detail))


# Inputs: the rules both shops share (examples/shopinput.py), read as dependencies.

Fields = dict[str, Any]


def body(schema: Schema) -> Any:
    """A dependency: the JSON body checked against `schema` (Invalid, a 422, otherwise)."""

    async def fields(request: Request) -> Fields:
        return read(schema, json_object(await request.body()), "body")

    return Depends(fields)


def query(schema: Schema) -> Any:
    """A dependency: the query parameters checked against `schema`."""

    async def fields(request: Request) -> Fields:
        return read(schema, request.query_params, "query")

    return Depends(fields)


# Who is asking.


async def current_user(authorization: Annotated[str | None, Header()] = None) -> int:
    return customer_of(config, authorization)


async def admin(authorization: Annotated[str | None, Header()] = None) -> None:
    require_admin(config, authorization)


User_ = Annotated[int, Depends(current_user)]


# Catalog (cached by the SDK).


@api.get("/")
async def home() -> dict[str, Any]:
    async with Session() as s:
        featured = await s.scalars(select(Product).where(Product.featured).order_by(Product.id))
        return {"featured": [product_body(p) for p in featured], "categories": list(CATEGORIES)}


@api.get("/products", openapi_extra=openapi_query(PRODUCTS_QUERY))
async def list_products(params: Annotated[Fields, query(PRODUCTS_QUERY)]) -> dict[str, Any]:
    category, page, per_page = params["category"], params["page"], params["per_page"]
    listing = select(Product)
    counted = select(func.count()).select_from(Product)
    if category is not None:
        listing = listing.where(Product.category == category)
        counted = counted.where(Product.category == category)
    listing = listing.order_by(Product.id).limit(per_page).offset((page - 1) * per_page)
    async with Session() as s:
        items = [product_body(p) for p in await s.scalars(listing)]
        total = await s.scalar(counted)
    return {"items": items, "page": page, "per_page": per_page, "total": total}


@api.get("/products/{id}")
async def get_product(raw_id: Annotated[str, Path(alias="id")]) -> dict[str, Any]:
    product_id = path_id(raw_id)
    async with Session() as s:
        product = await s.get(Product, product_id)
    if product is None:
        raise Problem(404, "No such product")
    return product_body(product)


# Accounts (rate-limited by the SDK's defaults).


@api.post("/signup", status_code=201, openapi_extra=openapi_body(SIGNUP))
async def signup(fields: Annotated[Fields, body(SIGNUP)]) -> dict[str, Any]:
    hashed = await asyncio.to_thread(hash_password, fields["password"])
    user = User(email=fields["email"].lower(), password_hash=hashed, name=fields["name"])
    async with Session() as s:
        s.add(user)
        try:
            await s.commit()
        except IntegrityError:
            raise Problem(409, "Email already registered") from None
    log.info("user.signed_up", user_id=user.id)
    return {"id": user.id, "email": user.email, "token": sign_token(config.secret_key, user.id)}


@api.post("/login", openapi_extra=openapi_body(LOGIN))
async def login(fields: Annotated[Fields, body(LOGIN)]) -> dict[str, str]:
    async with Session() as s:
        user = await s.scalar(select(User).where(User.email == fields["email"].lower()))
    stored = user.password_hash if user is not None else dummy_password_hash()
    valid = await asyncio.to_thread(verify_password, fields["password"], stored)
    if user is None or not valid:
        raise Problem(401, "Invalid email or password")
    log.info("user.logged_in", user_id=user.id)
    return {"token": sign_token(config.secret_key, user.id)}


@api.post("/password-reset", status_code=202, openapi_extra=openapi_body(PASSWORD_RESET))
async def password_reset(fields: Annotated[Fields, body(PASSWORD_RESET)]) -> dict[str, str]:
    async with Session() as s:
        user = await s.scalar(select(User).where(User.email == fields["email"].lower()))
    if user is not None:
        reset = sign_token(config.secret_key + ":reset", user.id)
        await send_email(user.email, "Reset your password", f"Your reset code: {reset}")
    # The same answer either way, so the route does not reveal who has an account.
    return {"status": "sent"}


async def send_email(to: str, subject: str, text_: str) -> bool:
    try:
        response = await providers.email.post(EMAIL_PATH, **email_request(to, subject, text_))
        response.raise_for_status()
    except httpx.HTTPError as exc:
        return email_failed(exc, subject)
    return True


# Cart and checkout.


async def cart_lines(s: Any, user_id: int) -> list[tuple[CartItem, Product]]:
    rows = await s.execute(
        select(CartItem, Product)
        .join(Product, Product.id == CartItem.product_id)
        .where(CartItem.user_id == user_id)
        .order_by(CartItem.product_id)
    )
    return [(item, product) for item, product in rows]


def cart_body(lines: list[tuple[CartItem, Product]]) -> dict[str, Any]:
    items = [
        {
            "product_id": p.id,
            "name": p.name,
            "quantity": item.quantity,
            "price_cents": p.price_cents,
        }
        for item, p in lines
    ]
    return {"items": items, "total_cents": sum(i["quantity"] * i["price_cents"] for i in items)}


def add_line(user_id: int, product_id: int, quantity: int, *, clamp: bool = False) -> Any:
    """One statement that creates the cart line or adds to it, atomically, so concurrent adds
    never lose a quantity. It returns the new quantity, or no row when the line would pass
    `MAX_LINE_QUANTITY` (with `clamp`, the line is filled to the cap instead)."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    insert = dialect.insert(CartItem).values(
        user_id=user_id, product_id=product_id, quantity=quantity
    )
    added = CartItem.quantity + insert.excluded.quantity
    new_quantity = case((added > MAX_LINE_QUANTITY, MAX_LINE_QUANTITY), else_=added)
    return insert.on_conflict_do_update(
        index_elements=[CartItem.user_id, CartItem.product_id],
        set_={"quantity": new_quantity if clamp else added},
        where=None if clamp else added <= MAX_LINE_QUANTITY,
    ).returning(CartItem.quantity)


@api.post("/cart/items", status_code=201, openapi_extra=openapi_body(CART_ITEM))
async def add_to_cart(fields: Annotated[Fields, body(CART_ITEM)], user_id: User_) -> dict[str, Any]:
    product_id, quantity = fields["product_id"], fields["quantity"]
    async with Session() as s:
        if await s.get(Product, product_id) is None:
            raise Problem(404, "No such product")
        added = (await s.execute(add_line(user_id, product_id, quantity))).first()
        await s.commit()
        if added is None:
            raise Invalid([{"loc": ["body", "quantity"], "msg": line_cap_message()}])
        return cart_body(await cart_lines(s, user_id))


def line_cap_message() -> str:
    return f"a cart line holds at most {MAX_LINE_QUANTITY} of a product"


@api.get("/cart")
async def get_cart(user_id: User_) -> dict[str, Any]:
    async with Session() as s:
        return cart_body(await cart_lines(s, user_id))


@api.post("/checkout", status_code=201)
async def checkout(request: Request, user_id: User_) -> dict[str, Any]:
    async with Session() as s:
        lines = await cart_lines(s, user_id)
    if not lines:
        raise Problem(409, "The cart is empty")
    order_id = new_order_id()
    total = sum(item.quantity * p.price_cents for item, p in lines)
    if total > MAX_ORDER_TOTAL_CENTS:
        raise Problem(422, "Order too large", f"An order totals at most {MAX_ORDER_TOTAL_CENTS}.")
    # One transaction moves the lines from the cart into a new order, so the provider's
    # webhook always finds the order and a second checkout of the same cart (another tab,
    # a double click without an Idempotency-Key) finds the lines gone. If the charge fails,
    # the order is deleted again and the lines go back to the cart.
    async with Session.begin() as s:
        for item, _ in lines:
            taken = await s.execute(
                delete(CartItem).where(
                    CartItem.user_id == user_id,
                    CartItem.product_id == item.product_id,
                    CartItem.quantity == item.quantity,
                )
            )
            if taken.rowcount != 1:  # type: ignore[attr-defined]
                raise Problem(409, "The cart changed during checkout; try again")
        s.add(Order(id=order_id, user_id=user_id, status="awaiting_payment", total_cents=total))
        await s.flush()
        s.add_all(
            OrderItem(
                order_id=order_id,
                product_id=p.id,
                name=p.name,
                quantity=item.quantity,
                price_cents=p.price_cents,
            )
            for item, p in lines
        )
    try:
        charge_id = await create_charge(order_id, total, webhook_url(request))
    except BaseException:  # a failed charge, or a cancelled request: undo the order
        await undo_order(user_id, order_id, [(i.product_id, i.quantity) for i, _ in lines])
        raise
    async with Session.begin() as s:
        await s.execute(update(Order).where(Order.id == order_id).values(charge_id=charge_id))
    log.info("order.created", order_id=order_id, amount_cents=total)
    return {
        "order_id": order_id,
        "status": "awaiting_payment",
        "total_cents": total,
        "charge_id": charge_id,
    }


async def undo_order(user_id: int, order_id: str, lines: list[tuple[int, int]]) -> None:
    """Delete an order whose charge failed and put its lines back in the cart."""
    async with Session.begin() as s:
        await s.execute(delete(OrderItem).where(OrderItem.order_id == order_id))
        await s.execute(delete(Order).where(Order.id == order_id))
        for product_id, quantity in lines:
            await s.execute(add_line(user_id, product_id, quantity, clamp=True))


def webhook_url(request: Request) -> str:
    return own_webhook_url(request.scope.get("server"))


async def create_charge(order_id: str, total: int, hook: str) -> str:
    try:
        response = await providers.payment.post(
            CHARGE_PATH, **charge_request(order_id, total, hook)
        )
        return charge_id_of(response)
    except PROVIDER_ERRORS as exc:
        raise payment_problem(exc, order_id) from None


@api.get("/orders/{order_id}")
async def get_order(
    raw_id: Annotated[str, Path(alias="order_id")], user_id: User_
) -> dict[str, Any]:
    order_id = read(ORDER_PATH, {"order_id": raw_id}, "path")["order_id"]
    async with Session() as s:
        order = await s.get(Order, order_id)
        if order is None or order.user_id != user_id:
            raise Problem(404, "No such order")
        items = list(await s.scalars(select(OrderItem).where(OrderItem.order_id == order_id)))
    return order_body(order, items)


# The payment provider's webhook: verified, applied once per event.


@api.post("/webhooks/payment")
async def payment_webhook(
    request: Request, payment_signature: Annotated[str | None, Header()] = None
) -> dict[str, str]:
    event = payment_event(config, await request.body(), payment_signature)
    async with Session() as s:
        order = await s.get(Order, event.order_id)
        email = (
            await s.scalar(select(User.email).where(User.id == order.user_id)) if order else None
        )
    new_status = event.order_status
    if order is None or new_status is None:
        return {"status": "ignored"}
    check_payment(event, order.total_cents, order.charge_id)
    if not await lr.idempotency.once(event.once_key, ttl_s=EVENT_TTL_S):
        return {"status": "duplicate"}
    try:
        async with Session.begin() as s:
            changed = await s.execute(
                update(Order)
                .where(
                    Order.id == event.order_id,
                    Order.status == "awaiting_payment",
                    Order.charge_id == event.charge_id,
                    Order.total_cents == event.amount_cents,
                )
                .values(status=new_status)
            )
    except BaseException:
        await lr.idempotency.forget(event.once_key)  # the provider's retry applies it
        raise
    if changed.rowcount == 1:  # type: ignore[attr-defined]
        log.info("order.payment", order_id=event.order_id, status=new_status)
        if new_status == "paid" and email:
            await send_email(email, confirmation_subject(event.order_id), CONFIRMATION_TEXT)
    return {"status": "processed"}


# Staff.


@api.get(
    "/admin/orders",
    dependencies=[Depends(admin)],
    openapi_extra=openapi_query(ADMIN_ORDERS_QUERY),
)
async def admin_orders(params: Annotated[Fields, query(ADMIN_ORDERS_QUERY)]) -> dict[str, Any]:
    status, limit = params["status"], params["limit"]
    listing = select(Order, User.email).join(User, User.id == Order.user_id)
    if status is not None:
        listing = listing.where(Order.status == status)
    listing = listing.order_by(Order.created_at.desc()).limit(limit)
    async with Session() as s:
        rows = (await s.execute(listing)).all()
        ids = [order.id for order, _ in rows]
        items: dict[str, list[OrderItem]] = {i: [] for i in ids}
        if ids:
            for item in await s.scalars(select(OrderItem).where(OrderItem.order_id.in_(ids))):
                items[item.order_id].append(item)
    return {
        "items": [
            {**order_body(order, items[order.id]), "user_email": email} for order, email in rows
        ]
    }


@api.patch(
    "/admin/products/{id}",
    dependencies=[Depends(admin)],
    openapi_extra=openapi_body(PRODUCT_PATCH),
)
async def edit_product(
    raw_id: Annotated[str, Path(alias="id")], fields: Annotated[Fields, body(PRODUCT_PATCH)]
) -> dict[str, Any]:
    product_id = path_id(raw_id)
    changes = {k: v for k, v in fields.items() if v is not None}
    async with Session.begin() as s:
        product = await s.get(Product, product_id)
        if product is None:
            raise Problem(404, "No such product")
        for key, value in changes.items():
            setattr(product, key, value)
    for path in (f"/products/{product_id}", "/products", "/"):
        await lr.cache.invalidate(path)
    log.info("product.edited", product_id=product_id, fields=sorted(changes))
    return product_body(product)


app = lr.wrap(api)
