"""Sync views (served at /sync/...)."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
