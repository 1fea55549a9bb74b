"""Two tables with a foreign key, for the deliberately naive (N+1) view."""

from __future__ import annotations

from django.db import models


class Author(models.Model):
    name = models.CharField(max_length=100)


class Book(models.Model):
    title = models.CharField(max_length=100)
    author = models.ForeignKey(Author, on_delete=models.CASCADE)
