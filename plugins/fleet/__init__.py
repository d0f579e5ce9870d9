"""The fleet page: every (family, region) on one page inside the Airflow UI.

``rows`` puts the registry state (``promotion.status``), the last deploy (the deploy stage's
``modelyard://deployed/<release>`` Asset events) and the live plan together per pair, and
filters, sorts and pages them; ``sources`` reads those stores; ``page`` renders ``fleet.html``;
``app`` is the FastAPI app, which ``mount`` hands to the plugin (``plugins/modelyard_plugin.py``)
at ``urls.URL_PREFIX`` with a "Fleet" entry in the UI's navigation.
"""
