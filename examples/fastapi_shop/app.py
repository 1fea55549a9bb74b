"""The bundled FastAPI shop: a small real shop that shows every SDK feature at work.

    uvicorn examples.fastapi_shop.app:app

Catalog and home are cached (and invalidated when an admin edits a product); sign-up, login,
password reset and the payment webhook are rate-limited; checkout is idempotent and calls the
payment provider through `lr.http_client()`; the webhook is verified, applied once per event,
and confirms the order by email. The HTTP contract is in `examples/README.md`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import httpx
from fastapi import Depends, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import delete, func, select, text, update
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
from launchready_sdk import LaunchReady, Settings, get_logger

MAX_ID = 2**31 - 1  # ids are 32-bit in every database the shop runs on
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
    if config.using_dev_secrets:
        log.warning("shop.dev_secrets", hint="set SHOP_SECRET_KEY and SHOP_WEBHOOK_SECRET")
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


@api.exception_handler(RequestValidationError)
async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
    errors = [
        {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    return problem(
        422, "Invalid request", "The request body or parameters are invalid.", errors=errors
    )


@api.exception_handler(StarletteHTTPException)
async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    return problem(exc.status_code, str(exc.detail))


# Bodies.


class SignupIn(BaseModel):
    email: str = Field(min_length=3, max_length=254, pattern=r"^[^@\s]+@[^@\s]+$")
    password: str = Field(min_length=8, max_length=1024)
    name: str = Field(default="", max_length=200)


class LoginIn(BaseModel):
    email: str = Field(max_length=254)
    password: str = Field(max_length=1024)


class ResetIn(BaseModel):
    email: str = Field(max_length=254)


class CartItemIn(BaseModel):
    product_id: int = Field(ge=1, le=MAX_ID)
    quantity: int = Field(ge=1, le=100)


class ProductPatch(BaseModel):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=5000)
    price_cents: int | None = Field(default=None, ge=0)
    stock: int | None = Field(default=None, ge=0)


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


@api.get("/products")
async def list_products(
    category: Annotated[str | None, Query(max_length=40)] = None,
    page: Annotated[int, Query(ge=1, le=10_000)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 20,
) -> dict[str, Any]:
    query = select(Product)
    counted = select(func.count()).select_from(Product)
    if category is not None:
        query = query.where(Product.category == category)
        counted = counted.where(Product.category == category)
    query = query.order_by(Product.id).limit(per_page).offset((page - 1) * per_page)
    async with Session() as s:
        items = [product_body(p) for p in await s.scalars(query)]
        total = await s.scalar(counted)
    return {"items": items, "page": page, "per_page": per_page, "total": total}


@api.get("/products/{id}")
async def get_product(
    product_id: Annotated[int, Path(alias="id", ge=1, le=MAX_ID)],
) -> dict[str, Any]:
    async with Session() as s:
        product = await s.get(Product, product_id)
    if product is None:
        raise Problem(404, "No such product")
    return product_body(product)


# Accounts (rate-limited by the SDK's defaults).


@api.post("/signup", status_code=201)
async def signup(body: SignupIn) -> dict[str, Any]:
    hashed = await asyncio.to_thread(hash_password, body.password)
    user = User(email=body.email.lower(), password_hash=hashed, name=body.name)
    async with Session() as s:
        s.add(user)
        try:
            await s.commit()
        except IntegrityError:
            raise Problem(409, "Email already registered") from None
    log.info("user.signed_up", user_id=user.id)
    return {"id": user.id, "email": user.email, "token": sign_token(config.secret_key, user.id)}


@api.post("/login")
async def login(body: LoginIn) -> dict[str, str]:
    async with Session() as s:
        user = await s.scalar(select(User).where(User.email == body.email.lower()))
    stored = user.password_hash if user is not None else dummy_password_hash()
    valid = await asyncio.to_thread(verify_password, body.password, stored)
    if user is None or not valid:
        raise Problem(401, "Invalid email or password")
    log.info("user.logged_in", user_id=user.id)
    return {"token": sign_token(config.secret_key, user.id)}


@api.post("/password-reset", status_code=202)
async def password_reset(body: ResetIn) -> dict[str, str]:
    async with Session() as s:
        user = await s.scalar(select(User).where(User.email == body.email.lower()))
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


@api.post("/cart/items", status_code=201)
async def add_to_cart(body: CartItemIn, user_id: User_) -> dict[str, Any]:
    async with Session() as s:
        if await s.get(Product, body.product_id) is None:
            raise Problem(404, "No such product")
        item = await s.get(CartItem, (user_id, body.product_id))
        if item is None:
            s.add(CartItem(user_id=user_id, product_id=body.product_id, quantity=body.quantity))
        else:
            item.quantity = min(item.quantity + body.quantity, 1000)
        try:
            await s.commit()
        except IntegrityError:
            raise Problem(409, "The cart changed; try again") from None
        return cart_body(await cart_lines(s, user_id))


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
            item = await s.get(CartItem, (user_id, product_id))
            if item is None:
                s.add(CartItem(user_id=user_id, product_id=product_id, quantity=quantity))
            else:
                item.quantity = min(item.quantity + quantity, 1000)


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
    order_id: Annotated[str, Path(max_length=64)], user_id: User_
) -> dict[str, Any]:
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
    if not await lr.idempotency.once(event.once_key, ttl_s=EVENT_TTL_S):
        return {"status": "duplicate"}
    try:
        async with Session.begin() as s:
            changed = await s.execute(
                update(Order)
                .where(Order.id == event.order_id, Order.status == "awaiting_payment")
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


@api.get("/admin/orders", dependencies=[Depends(admin)])
async def admin_orders(
    status: Annotated[str | None, Query(max_length=20)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    query = select(Order, User.email).join(User, User.id == Order.user_id)
    if status is not None:
        query = query.where(Order.status == status)
    query = query.order_by(Order.created_at.desc()).limit(limit)
    async with Session() as s:
        rows = (await s.execute(query)).all()
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


@api.patch("/admin/products/{id}", dependencies=[Depends(admin)])
async def edit_product(
    product_id: Annotated[int, Path(alias="id", ge=1, le=MAX_ID)], body: ProductPatch
) -> dict[str, Any]:
    changes = body.model_dump(exclude_none=True)
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
