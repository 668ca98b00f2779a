from django.urls import URLPattern

app_name = "strategies"
urlpatterns: list[URLPattern] = []
