from django import template

register = template.Library()


@register.filter
def words(value: str) -> str:
    """``new_customers`` → ``New customers``."""
    text = str(value).replace("_", " ")
    return text[:1].upper() + text[1:]
