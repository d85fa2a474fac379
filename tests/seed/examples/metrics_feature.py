from rfobs import get_metrics_collector, track_agent_task

@track_agent_task("DesignOps", "token_extraction")
async def extract_tokens():
    # Automatically tracked with metrics
    pass

metrics = get_metrics_collector()
metrics.start_http_server(9090)  # http://localhost:9090/metrics
