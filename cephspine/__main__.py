from cephspine.cli import main

main()
