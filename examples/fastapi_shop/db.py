"""The shop's tables (SQLAlchemy 2, async), its engine, and the first-start seed.

Money is in 64-bit columns (`BigInteger`): a large cart passes 2**31 cents. The shop has no
migration tool, so `create_and_seed` widens the money columns of a PostgreSQL database that an
older version created as 32-bit `integer`s.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    event,
    func,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from examples.shopcore import DEMO_EMAIL, hash_password, seed_products


class Base(DeclarativeBase):
    pass


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)


class Product(Base):
    __tablename__ = "products"
    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(40))
    price_cents: Mapped[int] = mapped_column(BigInteger)
    stock: Mapped[int]
    featured: Mapped[bool] = mapped_column(default=False)
    description: Mapped[str] = mapped_column(Text, default="")

    # The catalog lists by category in id order, and the home page lists featured products.
    __table_args__ = (
        Index("ix_products_category_id", "category", "id"),
        Index("ix_products_featured", "featured"),
    )


class CartItem(Base):
    __tablename__ = "cart_items"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)
    quantity: Mapped[int]


class Order(Base):
    __tablename__ = "orders"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    status: Mapped[str] = mapped_column(String(20))
    total_cents: Mapped[int] = mapped_column(BigInteger)
    charge_id: Mapped[str | None] = mapped_column(String(64), default=None)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=_now)

    # A user's orders, and the admin list filtered by status, newest first.
    __table_args__ = (
        Index("ix_orders_user_created", "user_id", "created_at"),
        Index("ix_orders_status_created", "status", "created_at"),
        Index("ix_orders_created", "created_at"),
    )


class OrderItem(Base):
    __tablename__ = "order_items"
    order_id: Mapped[str] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True
    )
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int]
    price_cents: Mapped[int] = mapped_column(BigInteger)


def async_url(url: str) -> str:
    """Accept plain `postgresql://` and `sqlite://` URLs and pick the async drivers."""
    for plain, driver in (
        ("postgresql://", "postgresql+asyncpg://"),
        ("postgres://", "postgresql+asyncpg://"),
        ("sqlite://", "sqlite+aiosqlite://"),
    ):
        if url.startswith(plain):
            return driver + url[len(plain) :]
    return url


def make_engine(url: str) -> AsyncEngine:
    url = async_url(url)
    if url.startswith("sqlite"):
        engine = create_async_engine(url, connect_args={"timeout": 30}, hide_parameters=True)

        @event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_connection: Any, _record: Any) -> None:
            # WAL lets the catalog be read while an order is written.
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    # Statement parameters (emails, password hashes) stay out of error messages and logs.
    return create_async_engine(
        url, pool_size=10, max_overflow=10, pool_pre_ping=True, hide_parameters=True
    )


async def create_and_seed(engine: AsyncEngine, demo_password: str) -> bool:
    """Create the tables and seed the catalog and the demo user, once. True if it seeded.

    Safe when several workers start together: a worker that loses the race to insert the
    seed sees the unique-key conflict and leaves the data the winner wrote.
    """
    try:
        async with engine.begin() as conn:
            await conn.run_sync(Base.metadata.create_all)
    except (IntegrityError, OperationalError):
        pass  # another worker created them at the same moment
    if engine.dialect.name == "postgresql":
        await _widen_money_columns(engine)
    sessions = async_sessionmaker(engine, expire_on_commit=False)
    async with sessions() as session:
        count = await session.scalar(select(func.count()).select_from(Product))
        if count:
            return False
        session.add_all(Product(**p) for p in seed_products())
        session.add(User(email=DEMO_EMAIL, password_hash=hash_password(demo_password), name="Demo"))
        try:
            await session.commit()
        except IntegrityError:
            await session.rollback()
            return False
    if engine.dialect.name == "postgresql":  # the seed wrote explicit ids
        async with engine.begin() as conn:
            await conn.exec_driver_sql(
                "SELECT setval(pg_get_serial_sequence('products', 'id'), "
                "(SELECT MAX(id) FROM products))"
            )
    return True


_MONEY_COLUMNS = (
    ("products", "price_cents"),
    ("orders", "total_cents"),
    ("order_items", "price_cents"),
)


async def _widen_money_columns(engine: AsyncEngine) -> None:
    """Turn 32-bit money columns of an older database into 64-bit ones (once; a no-op after)."""
    async with engine.begin() as conn:
        for table, column in _MONEY_COLUMNS:
            kind = await conn.scalar(
                text(
                    "SELECT data_type FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND table_name = :t AND column_name = :c"
                ),
                {"t": table, "c": column},
            )
            if kind == "integer":
                await conn.exec_driver_sql(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE BIGINT")
