"""Asset of the `Custom::ApiGatewayAccountLogging` resource (stack/api_gateway_account.py); `handler.py`."""
