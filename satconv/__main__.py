from .scripts.stops import main

main()
